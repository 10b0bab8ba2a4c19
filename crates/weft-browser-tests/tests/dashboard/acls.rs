//! The dashboard under ACLs, in a real browser: without a token it shows what anonymous may read and offers sign-in;
//! a wrong secret is refused on the sign-in page with the API's text; a service token sees its service and not the
//! others, with write controls disabled and the missing permission on hover; signing out forgets the token; the
//! management token edits policies (a rule mistake shown under the rules, with its line) and creates tokens.

use crate::browser::Browser;
use anyhow::{ensure, Context, Result};
use serde_json::json;
use std::time::Duration;
use weft_testkit::DevAgent;

const ROOT: &str = "5f0e6d1c-2b3a-4c5d-8e9f-0a1b2c3d4e5f";
const WAIT: Duration = Duration::from_secs(10);

async fn put(agent: &DevAgent, path: &str, body: serde_json::Value) -> Result<serde_json::Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let r = agent
        .put_json(&format!("{path}{sep}token={ROOT}"), &body)
        .await?;
    r.expect_status(200)?;
    // Registrations answer with an empty body.
    Ok(r.json().unwrap_or(serde_json::Value::Null))
}

async fn shown_services(b: &Browser) -> Result<Vec<String>> {
    let v = b
        .js(
            "return [...document.querySelectorAll('[data-service]')].map(e => e.dataset.service).sort();",
            vec![],
        )
        .await?;
    Ok(v.as_array()
        .context("array")?
        .iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect())
}

async fn sign_in(b: &Browser, secret: &str) -> Result<()> {
    b.type_into("#secret", secret).await?;
    b.click("form[data-login] button[type=submit]").await
}

#[tokio::test]
async fn sign_in_filtered_pages_and_access_pages() -> Result<()> {
    let acl = format!(
        r#"acl {{ enabled = true  default_policy = "deny"  tokens {{ initial_management = "{ROOT}" }} }}
           default_intention_policy = "deny""#
    );
    let agent = DevAgent::builder().arg("-hcl").arg(acl).start()?;
    agent.wait_for_acls(ROOT).await?;
    let Some(b) = Browser::start().await? else {
        return Ok(());
    };
    for name in ["web", "db"] {
        put(
            &agent,
            "/v1/agent/service/register",
            json!({"Name": name, "Port": 8080}),
        )
        .await?;
    }
    put(
        &agent,
        "/v1/connect/intentions/exact?source=db&destination=web",
        json!({"Action": "allow"}),
    )
    .await?;
    put(
        &agent,
        "/v1/acl/policy",
        json!({"Name": "web-reader", "Rules": "service \"web\" { policy = \"read\" }"}),
    )
    .await?;
    let reader = put(
        &agent,
        "/v1/acl/token",
        json!({"Policies": [{"Name": "web-reader"}]}),
    )
    .await?["SecretID"]
        .as_str()
        .context("SecretID")?
        .to_string();

    // Not signed in: nothing readable under default deny, and a way to sign in.
    b.goto(&agent.url("/ui/dc1/services")).await?;
    ensure!(b.text(".banner.info").await?.contains("not signed in"));
    ensure!(shown_services(&b).await?.is_empty());
    b.click(".banner.info a[data-sign-in]").await?;
    b.wait_for(
        "the sign-in page",
        "return location.pathname === '/ui/dc1/login';",
        WAIT,
    )
    .await?;

    // A wrong secret is refused where it was typed, and nothing is kept.
    sign_in(&b, "00000000-0000-4000-8000-000000000000").await?;
    let error = b
        .wait_for(
            "the refusal",
            "const e = document.querySelector('form[data-login] .error'); return e && !e.hidden && e.textContent;",
            WAIT,
        )
        .await?;
    ensure!(
        error.as_str().unwrap_or("").contains("ACL not found"),
        "{error}"
    );
    ensure!(b
        .js("return localStorage.getItem('weft:token');", vec![])
        .await?
        .is_null());

    // The reader token: back where the viewer came from, seeing web and not db.
    sign_in(&b, &reader).await?;
    b.wait_for(
        "the services page",
        "return location.pathname === '/ui/dc1/services' && document.querySelector('[data-sign-out]');",
        WAIT,
    )
    .await?;
    ensure!(
        shown_services(&b).await? == ["web"],
        "{:?}",
        shown_services(&b).await?
    );
    b.screenshots("acl-services-as-reader").await?;

    // Its intention page is readable but not writable: the buttons say why on hover.
    b.goto(&agent.url("/ui/dc1/intentions/db:web")).await?;
    let save = b
        .js(
            "const s = document.querySelector('form[data-intention-form] button[type=submit]'); return [s.disabled, s.title];",
            vec![],
        )
        .await?;
    ensure!(save[0] == true, "save enabled: {save}");
    ensure!(
        save[1].as_str().unwrap_or("").contains("intentions:write"),
        "{save}"
    );
    // Another service's page is refused with the API's text.
    b.goto(&agent.url("/ui/dc1/services/db/instances")).await?;
    ensure!(b
        .text("main")
        .await?
        .contains("lacks permission 'service:read' on \"db\""));

    // Signing out forgets the token.
    b.goto(&agent.url("/ui/dc1/services")).await?;
    b.click("[data-sign-out]").await?;
    b.wait_for(
        "the sign-in page",
        "return location.pathname === '/ui/dc1/login';",
        WAIT,
    )
    .await?;
    ensure!(b
        .js("return localStorage.getItem('weft:token');", vec![])
        .await?
        .is_null());
    b.goto(&agent.url("/ui/dc1/services")).await?;
    ensure!(shown_services(&b).await?.is_empty());

    // The management token: the access pages, a rule mistake shown under the rules, then a policy and a token.
    b.goto(&agent.url("/ui/dc1/login")).await?;
    sign_in(&b, ROOT).await?;
    b.wait_for(
        "signed in",
        "return document.querySelector('[data-sign-out]');",
        WAIT,
    )
    .await?;
    let all = shown_services(&b).await?;
    ensure!(
        all.contains(&"db".to_string()) && all.contains(&"web".to_string()),
        "{all:?}"
    );
    b.goto(&agent.url("/ui/dc1/acls/policies")).await?;
    b.wait_for(
        "the policy list",
        "return [...document.querySelectorAll('[data-acl-list] td')].some(td => td.textContent === 'web-reader');",
        WAIT,
    )
    .await?;
    b.click("[data-acl-editor] summary").await?;
    b.type_into("#acl-name", "ops").await?;
    b.set_value(
        "#acl-rules",
        "key_prefix \"\" {\n  policy = \"sometimes\"\n}",
    )
    .await?;
    b.click("form[data-acl-form] button[type=submit]").await?;
    let mistake = b
        .wait_for(
            "the rule mistake",
            "const e = document.querySelector('[data-rules-error]'); return e && !e.hidden && e.textContent;",
            WAIT,
        )
        .await?;
    ensure!(mistake.as_str().unwrap_or("").contains("400"), "{mistake}");
    ensure!(mistake.as_str().unwrap_or("").contains("line"), "{mistake}");
    b.set_value("#acl-rules", "key_prefix \"\" {\n  policy = \"read\"\n}")
        .await?;
    b.click("form[data-acl-form] button[type=submit]").await?;
    b.wait_for(
        "the new policy listed",
        "return [...document.querySelectorAll('[data-acl-list] td')].some(td => td.textContent === 'ops');",
        WAIT,
    )
    .await?;
    let listed = agent
        .get(&format!("/v1/acl/policy/name/ops?token={ROOT}"))
        .await?
        .json()?;
    ensure!(
        listed["Rules"].as_str().unwrap_or("").contains("read"),
        "{listed}"
    );

    b.goto(&agent.url("/ui/dc1/acls/tokens")).await?;
    b.wait_for(
        "the token list",
        "return document.querySelector('[data-acl-list] table');",
        WAIT,
    )
    .await?;
    b.click("[data-acl-editor] summary").await?;
    b.type_into("#acl-description", "api sidecar").await?;
    b.type_into("#acl-services", "api").await?;
    b.click("form[data-acl-form] button[type=submit]").await?;
    let saved = b
        .wait_for(
            "the created token",
            "const e = document.querySelector('form[data-acl-form] .saved'); return e && !e.hidden && e.textContent;",
            WAIT,
        )
        .await?;
    ensure!(saved.as_str().unwrap_or("").contains("SecretID"), "{saved}");
    let tokens = agent
        .get(&format!("/v1/acl/tokens?token={ROOT}"))
        .await?
        .json()?;
    let made = tokens.as_array().context("tokens")?.iter().any(|t| {
        t["Description"] == "api sidecar" && t["ServiceIdentities"][0]["ServiceName"] == "api"
    });
    ensure!(made, "{tokens}");
    b.screenshots("acl-tokens").await?;
    b.close().await
}
