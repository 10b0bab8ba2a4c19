//! The dashboard in a real browser against a real agent: the lists match the API, changes arrive live without a
//! reload, an intention created in the UI refuses a real connection through two sidecars (and deleting it restores
//! the connection), KV edits round-trip, and bad input shows the API's error inline while changing nothing.
//! Every page is saved as a screenshot at laptop and phone widths for review.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod acls;
mod browser;
mod fixtures;
mod mesh;

use anyhow::{ensure, Context, Result};
use browser::{is_png, screenshot_dir, Browser};
use fixtures::{populate, register};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use weft_testkit::{eventually, DevAgent};

/// Opens a browser, or ends the test with the "skipped" message when none is installed.
macro_rules! browser_or_skip {
    () => {
        match Browser::start().await? {
            Some(b) => b,
            None => return Ok(()),
        }
    };
}

const WAIT: Duration = Duration::from_secs(10);

async fn strings(b: &Browser, script: &str) -> Result<BTreeSet<String>> {
    let v = b.js(script, vec![]).await?;
    Ok(v.as_array()
        .context("expected an array")?
        .iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect())
}

#[tokio::test]
async fn nodes_and_services_pages_list_what_the_api_lists() -> Result<()> {
    let agent = DevAgent::start()?;
    populate(&agent).await?;
    let b = browser_or_skip!();

    // Services: every name the catalog lists, except sidecars, which fold into the service they serve.
    let api = agent.get("/v1/catalog/services").await?.json()?;
    let mut expected = BTreeSet::new();
    for name in api.as_object().context("services map")?.keys() {
        let entries = agent
            .get(&format!("/v1/catalog/service/{name}"))
            .await?
            .json()?;
        let folded = entries.as_array().is_some_and(|a| {
            a.iter().all(|e| {
                e["ServiceKind"] == "connect-proxy"
                    && api
                        .get(
                            e["ServiceProxy"]["DestinationServiceName"]
                                .as_str()
                                .unwrap_or(""),
                        )
                        .is_some()
            })
        });
        if !folded {
            expected.insert(name.clone());
        }
    }
    b.goto(&agent.url("/")).await?;
    ensure!(
        b.path().await? == "/ui/dc1/services",
        "/ redirects to the services page"
    );
    let shown = strings(
        &b,
        "return [...document.querySelectorAll('[data-service]')].map(e => e.dataset.service);",
    )
    .await?;
    ensure!(shown == expected, "UI {shown:?} != API {expected:?}");
    ensure!(expected.contains("web") && !shown.contains("web-sidecar-proxy"));
    let db = b.text("[data-service=db]").await?;
    ensure!(db.contains("Critical") && db.contains("primary"), "{db}");
    let web = b.text("[data-service=web]").await?;
    ensure!(web.contains("in service mesh with proxy"), "{web}");

    // Search and the health filter, by keyboard.
    b.type_into("input[name=q]", "fronT").await?;
    let visible = strings(
        &b,
        "return [...document.querySelectorAll('[data-service]')].filter(e => !e.hidden).map(e => e.dataset.service);",
    )
    .await?;
    ensure!(
        visible == BTreeSet::from(["web".to_string()]),
        "search by tag: {visible:?}"
    );
    b.set_value("input[name=q]", "").await?;
    b.js(
        "const s = document.querySelector('select[name=status]'); s.value = 'critical'; \
         s.dispatchEvent(new Event('input', {bubbles: true})); return true;",
        vec![],
    )
    .await?;
    let visible = strings(
        &b,
        "return [...document.querySelectorAll('[data-service]')].filter(e => !e.hidden).map(e => e.dataset.service);",
    )
    .await?;
    // db's own check fails; web's and api's sidecars are registered but not running, so their checks fail too.
    let critical: BTreeSet<String> = ["api", "db", "web"].map(String::from).into();
    ensure!(visible == critical, "critical only: {visible:?}");
    ensure!(b.path().await? == "/ui/dc1/services");

    // Nodes: the catalog's nodes, the leader marked.
    let api_nodes: BTreeSet<String> = agent
        .get("/v1/catalog/nodes")
        .await?
        .json()?
        .as_array()
        .context("nodes")?
        .iter()
        .filter_map(|n| n["Node"].as_str().map(str::to_string))
        .collect();
    b.goto(&agent.url("/ui/dc1/nodes")).await?;
    let shown = strings(
        &b,
        "return [...document.querySelectorAll('[data-node]')].map(e => e.dataset.node);",
    )
    .await?;
    ensure!(shown == api_nodes, "UI {shown:?} != API {api_nodes:?}");
    let own = b.text(&format!("[data-node='{}']", agent.node())).await?;
    // The badge's text is upper-cased by the stylesheet, and innerText reports it so.
    ensure!(
        own.to_lowercase().contains("leader"),
        "the agent's node is the leader: {own}"
    );
    let ext = b.text("[data-node=ext-billing]").await?;
    ensure!(
        !ext.to_lowercase().contains("leader") && ext.contains("10.0.4.17"),
        "{ext}"
    );
    let leader = agent.get("/v1/status/leader").await?.json()?;
    let header = b.text("#leader").await?;
    ensure!(
        header.contains(leader.as_str().unwrap_or("?")),
        "{header} vs {leader}"
    );
    b.close().await
}

#[tokio::test]
async fn a_health_change_shows_up_live_without_a_reload() -> Result<()> {
    let agent = DevAgent::start()?;
    populate(&agent).await?;
    register(
        &agent,
        json!({"ID": "checkout-1", "Name": "checkout", "Port": 7000,
               "Check": {"CheckID": "checkout-ttl", "Name": "checkout alive", "TTL": "300s",
                         "Status": "passing", "Output": "ok"}}),
    )
    .await?;
    let b = browser_or_skip!();
    b.goto(&agent.url("/ui/dc1/services")).await?;
    ensure!(b.text("[data-service=checkout]").await?.contains("Passing"));
    b.js("window.__sameDocument = 'yes'; return true;", vec![])
        .await?;

    let started = Instant::now();
    agent
        .put_empty("/v1/agent/check/fail/checkout-ttl?note=health%20endpoint%20timed%20out")
        .await?
        .expect_status(200)?;
    b.wait_for(
        "checkout turns critical",
        "const r = document.querySelector('[data-service=checkout]'); return r && r.dataset.status === 'critical';",
        WAIT,
    )
    .await?;
    let took = started.elapsed();
    eprintln!("health change reached the services page in {took:?}");
    ensure!(
        took < Duration::from_millis(2500),
        "too slow for 'live': {took:?}"
    );
    let same = b
        .js("return window.__sameDocument || null;", vec![])
        .await?;
    ensure!(same == json!("yes"), "the page was reloaded");

    // The instance page shows the new output live too, and recovers.
    b.goto(&agent.url("/ui/dc1/services/checkout/instances"))
        .await?;
    ensure!(b
        .text("[data-check=checkout-ttl]")
        .await?
        .contains("health endpoint timed out"));
    agent
        .put_empty("/v1/agent/check/pass/checkout-ttl?note=back%20to%20normal")
        .await?
        .expect_status(200)?;
    b.wait_for(
        "the check output updates",
        "const c = document.querySelector('[data-check=checkout-ttl]'); return c && c.innerText.includes('back to normal');",
        WAIT,
    )
    .await?;

    // No polling storm: a quiet page holds one parked request, so almost nothing completes in three seconds.
    b.goto(&agent.url("/ui/dc1/services")).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let live_requests = b
        .js(
            "return performance.getEntriesByType('resource').filter(e => e.name.includes('live=')).length;",
            vec![],
        )
        .await?;
    ensure!(
        live_requests.as_u64().unwrap_or(99) <= 1,
        "a quiet page made {live_requests} live requests in 3 s"
    );
    b.close().await
}

#[tokio::test]
async fn a_deny_intention_made_in_the_ui_refuses_a_real_connection() -> Result<()> {
    let agent = DevAgent::start()?;
    let mesh = mesh::Mesh::start(&agent).await?;
    let port = mesh.upstream_port;
    let answer = eventually(WAIT, async || -> Result<Option<String>> {
        let (code, body) = mesh::http_get(port)?;
        Ok((code == 200).then_some(body))
    })
    .await
    .with_context(|| format!("the mesh never answered:\n{}", mesh.logs()))?;
    eprintln!("through both sidecars: {}", answer.trim());

    let b = browser_or_skip!();
    b.goto(&agent.url("/ui/dc1/intentions/create")).await?;
    b.type_into("#source", "test").await?;
    b.type_into("#destination", "greeting").await?;
    b.click("input[name=action][value=deny]").await?;
    b.type_into("#description", "made in the browser test")
        .await?;
    ensure!(b.text("[data-precedence]").await? == "9");
    b.click("form[data-intention-form] button[type=submit]")
        .await?;
    b.wait_for(
        "back on the intentions list with the new row",
        "return location.pathname === '/ui/dc1/intentions' && !!document.querySelector('[data-intention=\"test greeting\"]');",
        WAIT,
    )
    .await?;
    let row = b.text("[data-intention='test greeting']").await?;
    ensure!(row.contains("Deny") && row.contains('9'), "{row}");

    let refused = eventually(
        Duration::from_secs(15),
        async || -> Result<Option<String>> {
            let (code, body) = mesh::http_get(port)?;
            Ok((code == 503).then_some(body))
        },
    )
    .await
    .with_context(|| format!("the deny never applied:\n{}", mesh.logs()))?;
    ensure!(refused.contains("refused by intention"), "{refused}");
    eprintln!("with the deny: 503 {}", refused.trim());

    // The topology shows the edge, denied by that intention.
    b.goto(&agent.url("/ui/dc1/services/greeting/topology"))
        .await?;
    let edge = b.text("[data-edge='down:test']").await?;
    ensure!(
        edge.contains("Denied") && edge.contains("test => greeting (deny)"),
        "{edge}"
    );
    b.screenshots("mesh-topology-denied").await?;

    // Delete it from the list, with the inline confirmation.
    b.goto(&agent.url("/ui/dc1/intentions")).await?;
    b.click("[data-intention='test greeting'] [data-delete]")
        .await?;
    b.click("[data-intention='test greeting'] [data-confirm-yes]")
        .await?;
    b.wait_for(
        "the row disappears",
        "return !document.querySelector('[data-intention=\"test greeting\"]');",
        WAIT,
    )
    .await?;
    let list = agent.get("/v1/connect/intentions").await?.json()?;
    ensure!(list == json!([]), "{list}");
    eventually(Duration::from_secs(15), async || -> Result<bool> {
        Ok(mesh::http_get(port)?.0 == 200)
    })
    .await
    .with_context(|| format!("the connection never came back:\n{}", mesh.logs()))?;
    b.close().await
}

#[tokio::test]
async fn an_intention_edited_in_the_ui_changes_in_the_api() -> Result<()> {
    let agent = DevAgent::start()?;
    agent
        .put_json(
            "/v1/connect/intentions/exact?source=web&destination=db",
            &json!({"Action": "allow", "Description": "before"}),
        )
        .await?
        .expect_status(200)?;
    let b = browser_or_skip!();
    b.goto(&agent.url("/ui/dc1/intentions")).await?;
    b.click("[data-intention='web db'] a.button").await?;
    b.wait_for(
        "the edit form",
        "return !!document.querySelector('form[data-mode=edit]');",
        WAIT,
    )
    .await?;
    let readonly = b
        .js("return document.querySelector('#source').readOnly;", vec![])
        .await?;
    ensure!(readonly == json!(true), "the pair is fixed when editing");
    b.click("input[name=action][value=deny]").await?;
    b.type_into("#description", "after").await?;
    b.click("form[data-intention-form] button[type=submit]")
        .await?;
    b.wait_for(
        "back on the list, showing deny",
        "const r = document.querySelector('[data-intention=\"web db\"]'); return location.pathname === '/ui/dc1/intentions' && r && r.dataset.action === 'deny';",
        WAIT,
    )
    .await?;
    let i = agent
        .get("/v1/connect/intentions/exact?source=web&destination=db")
        .await?
        .json()?;
    ensure!(i["Action"] == "deny" && i["Description"] == "after", "{i}");
    b.close().await
}

async fn raw(agent: &DevAgent, key_path: &str) -> Result<Option<String>> {
    let r = agent.get(&format!("/v1/kv/{key_path}?raw")).await?;
    Ok(match r.status {
        200 => Some(r.text()),
        404 => None,
        s => anyhow::bail!("GET {key_path}: {s} {}", r.text()),
    })
}

#[tokio::test]
async fn kv_edits_round_trip() -> Result<()> {
    let agent = DevAgent::start()?;
    let b = browser_or_skip!();
    // Create a key whose name needs encoding, from the root folder.
    let key = "app/hello world?#%é";
    let encoded = "app/hello%20world%3F%23%25%C3%A9";
    b.goto(&agent.url("/ui/dc1/kv/")).await?;
    b.click("details.create > summary").await?;
    b.type_into("#kv-key", key).await?;
    b.type_into("#kv-value", "first value").await?;
    b.click("form[data-kv-create] button[type=submit]").await?;
    b.wait_for(
        "the new key's page",
        "return !!document.querySelector('form[data-kv-edit]');",
        WAIT,
    )
    .await?;
    ensure!(
        b.path().await? == format!("/ui/dc1/kv/{encoded}"),
        "{}",
        b.path().await?
    );
    ensure!(raw(&agent, encoded).await?.as_deref() == Some("first value"));

    // Edit it in the page.
    b.type_into("#kv-value", "second value\nwith two lines")
        .await?;
    b.click("form[data-kv-edit] button[type=submit]").await?;
    b.wait_for(
        "saved",
        "const s = document.querySelector('form[data-kv-edit] .saved'); return s && !s.hidden;",
        WAIT,
    )
    .await?;
    ensure!(raw(&agent, encoded).await?.as_deref() == Some("second value\nwith two lines"));
    b.wait_for(
        "the shown value follows",
        "const v = document.querySelector('[data-value]'); return v && v.innerText.includes('with two lines');",
        WAIT,
    )
    .await?;
    // Saving twice works (the page tracks the new index).
    b.type_into("#kv-value", "third").await?;
    b.click("form[data-kv-edit] button[type=submit]").await?;
    b.wait_for(
        "saved again",
        "const s = document.querySelector('form[data-kv-edit] .saved'); return s && !s.hidden;",
        WAIT,
    )
    .await?;
    ensure!(raw(&agent, encoded).await?.as_deref() == Some("third"));

    // A write from elsewhere shows up live, and a save based on the old value is refused, changing nothing.
    agent
        .put(&format!("/v1/kv/{encoded}"), b"written by the CLI".to_vec())
        .await?
        .expect_status(200)?;
    b.wait_for(
        "the API's write appears",
        "const v = document.querySelector('[data-value]'); return v && v.innerText === 'written by the CLI';",
        WAIT,
    )
    .await?;
    b.type_into("#kv-value", "stale edit").await?;
    b.click("form[data-kv-edit] button[type=submit]").await?;
    let err = b
        .wait_for(
            "the stale edit is refused",
            "const e = document.querySelector('form[data-kv-edit] .error'); return e && !e.hidden && e.innerText;",
            WAIT,
        )
        .await?;
    ensure!(err.as_str().unwrap_or("").contains("changed"), "{err}");
    ensure!(raw(&agent, encoded).await?.as_deref() == Some("written by the CLI"));

    // The folder lists it; a folder can be created; delete works with confirmation.
    b.goto(&agent.url("/ui/dc1/kv/app/")).await?;
    let listed = b.text("table.kv").await?;
    ensure!(listed.contains("hello world?#%é"), "{listed}");
    b.click("details.create > summary").await?;
    b.type_into("#kv-key", "nested/").await?;
    b.click("form[data-kv-create] button[type=submit]").await?;
    b.wait_for(
        "the new folder's page",
        "return location.pathname === '/ui/dc1/kv/app/nested/';",
        WAIT,
    )
    .await?;
    ensure!(agent.get("/v1/kv/app/nested/").await?.status == 200);
    b.goto(&agent.url(&format!("/ui/dc1/kv/{encoded}"))).await?;
    b.click("form[data-kv-edit] [data-delete]").await?;
    b.click("[data-confirm-yes]").await?;
    b.wait_for(
        "back in the folder",
        "return location.pathname === '/ui/dc1/kv/app/';",
        WAIT,
    )
    .await?;
    ensure!(raw(&agent, encoded).await?.is_none(), "deleted");
    b.close().await
}

#[tokio::test]
async fn bad_input_shows_the_api_error_inline_and_changes_nothing() -> Result<()> {
    let agent = DevAgent::start()?;
    register(&agent, json!({"Name": "web", "Port": 80})).await?;
    agent
        .put_json(
            "/v1/connect/intentions/exact?source=web&destination=db",
            &json!({"Action": "allow"}),
        )
        .await?
        .expect_status(200)?;
    let b = browser_or_skip!();
    let intentions_before = agent.get("/v1/connect/intentions").await?.json()?;

    let form_error =
        "const e = document.querySelector('form .error'); return e && !e.hidden && e.innerText;";
    // An invalid service name.
    b.goto(&agent.url("/ui/dc1/intentions/create")).await?;
    b.type_into("#source", "bad name!").await?;
    b.type_into("#destination", "web").await?;
    b.click("form[data-intention-form] button[type=submit]")
        .await?;
    let err = b.wait_for("an inline error", form_error, WAIT).await?;
    let err = err.as_str().unwrap_or("").to_string();
    ensure!(
        err.contains("400") && err.contains("Invalid intention") && err.contains("bad name!"),
        "{err}"
    );
    ensure!(b.path().await? == "/ui/dc1/intentions/create");
    b.screenshots("error-invalid-intention").await?;
    // A duplicate of an existing pair.
    b.type_into("#source", "web").await?;
    b.type_into("#destination", "db").await?;
    b.click("form[data-intention-form] button[type=submit]")
        .await?;
    b.wait_for(
        "the duplicate is refused",
        "const e = document.querySelector('form .error'); return e && !e.hidden && e.innerText.includes('duplicate');",
        WAIT,
    )
    .await?;
    ensure!(agent.get("/v1/connect/intentions").await?.json()? == intentions_before);

    // KV: an oversized value, a key with a control character, a key with a '..' segment.
    let keys_before = agent.get("/v1/kv/?keys").await?.text();
    b.goto(&agent.url("/ui/dc1/kv/")).await?;
    b.click("details.create > summary").await?;
    b.type_into("#kv-key", "big").await?;
    b.set_value("#kv-value", &"x".repeat(600 * 1024)).await?;
    b.click("form[data-kv-create] button[type=submit]").await?;
    let err = b.wait_for("an inline error", form_error, WAIT).await?;
    ensure!(err.as_str().unwrap_or("").contains("too large"), "{err}");
    b.screenshots("error-kv-too-large").await?;
    b.set_value("#kv-value", "small").await?;
    b.set_value("#kv-key", "bad\u{7}key").await?;
    b.click("form[data-kv-create] button[type=submit]").await?;
    b.wait_for(
        "the control character is refused",
        "const e = document.querySelector('form .error'); return e && !e.hidden && e.innerText.includes('unprintable');",
        WAIT,
    )
    .await?;
    b.set_value("#kv-key", "a/../b").await?;
    b.click("form[data-kv-create] button[type=submit]").await?;
    b.wait_for(
        "the dot-dot key is refused",
        "const e = document.querySelector('form .error'); return e && !e.hidden && e.innerText.includes('..');",
        WAIT,
    )
    .await?;
    ensure!(b.path().await? == "/ui/dc1/kv/");
    ensure!(agent.get("/v1/kv/?keys").await?.text() == keys_before);
    b.close().await
}

#[tokio::test]
async fn screenshots_of_every_page() -> Result<()> {
    let agent = DevAgent::start()?;
    populate(&agent).await?;
    let b = browser_or_skip!();
    let node = agent.node().to_string();
    let pages = [
        ("services", "/ui/dc1/services".to_string()),
        ("service-instances", "/ui/dc1/services/web/instances".into()),
        ("service-topology", "/ui/dc1/services/api/topology".into()),
        (
            "service-intentions",
            "/ui/dc1/services/db/intentions".into(),
        ),
        ("nodes", "/ui/dc1/nodes".into()),
        (
            "node-health-checks",
            format!("/ui/dc1/nodes/{node}/health-checks"),
        ),
        (
            "node-service-instances",
            format!("/ui/dc1/nodes/{node}/service-instances"),
        ),
        ("intentions", "/ui/dc1/intentions".into()),
        (
            "intention-create",
            "/ui/dc1/intentions/create?destination=db".into(),
        ),
        (
            "intention-edit",
            "/ui/dc1/intentions/default:default:web:default:default:cache".into(),
        ),
        ("kv-root", "/ui/dc1/kv/".into()),
        ("kv-folder", "/ui/dc1/kv/config/web/".into()),
        ("kv-key", "/ui/dc1/kv/config/web/feature-flags".into()),
        ("not-found", "/ui/dc1/no/such/page".into()),
    ];
    let mut saved = Vec::new();
    for (name, path) in &pages {
        b.goto(&agent.url(path)).await?;
        // Every page has the chrome; none has a script error banner or an unrendered template.
        let title = b.js("return document.title;", vec![]).await?;
        ensure!(
            title.as_str().is_some_and(|t| t.contains("Weft")),
            "{path}: {title}"
        );
        // The phone layout really is the narrow one (the media query applies).
        saved.extend(b.screenshots(name).await?);
    }
    b.client.set_window_size(390, 844).await?;
    let width = b.js("return window.innerWidth;", vec![]).await?;
    ensure!(
        width.as_u64().is_some_and(|w| w <= 720),
        "phone width applied: {width}"
    );
    for path in &saved {
        ensure!(is_png(path), "{} is not a PNG", path.display());
    }
    eprintln!(
        "saved {} screenshots in {}",
        saved.len(),
        screenshot_dir().display()
    );
    b.close().await
}
