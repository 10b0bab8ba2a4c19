//! ACLs on a real cluster: three servers and a client agent started with `acl { enabled = true default_policy =
//! "deny" }` and an initial management token. A token with only a service identity for `web`, created through the
//! client agent and resolved by it over server RPC, gets `web`'s leaf and nothing else; an unknown token gets
//! Consul's refusal; a token expires at its expiry; with every server gone, the client agent keeps honouring the
//! tokens it has cached (`down_policy = "extend-cache"`) and refuses those it has not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{Context, Result};
use serde_json::json;
use std::time::Duration;
use weft_testkit::mesh::{greeting_app, sidecar_for_with};
use weft_testkit::net::{free_port, http_get};
use weft_testkit::{eventually, weft_binary, Cli, CliOutput, Cluster, DevAgent, Spawned, TempDir};

const ROOT: &str = "0d9b8c1e-3f2a-4c6d-8e7f-a1b2c3d4e5f6";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_token_is_confined_to_its_service_across_a_cluster() -> Result<()> {
    // The harness reads the catalog without a token while the cluster forms, so requests without one use the
    // management token here (`acl.tokens.default`); every check below passes a token explicitly.
    let acl = format!(
        r#"acl {{
             enabled = true  default_policy = "deny"  token_min_expiration_ttl = "1s"
             tokens {{ initial_management = "{ROOT}"  default = "{ROOT}" }}
           }}
           default_intention_policy = "deny""#
    );
    let mut cluster = Cluster::start_with(3, 1, vec!["-hcl".into(), acl]).await?;
    let client = 3;
    let agent = cluster.agent(client)?;
    agent.wait_for_acls(ROOT).await?;

    let web = identity_token(agent, "web").await?;

    // Its own leaf, from the client agent (which resolves the token through a server).
    agent
        .get(&format!("/v1/agent/connect/ca/leaf/web?token={web}"))
        .await?
        .expect_status(200)?;
    // Nothing else: another service's leaf, an intention write, KV, a snapshot, the token list.
    for (method, path, permission) in [
        (
            "GET",
            "/v1/agent/connect/ca/leaf/db".to_string(),
            "service:write",
        ),
        (
            "PUT",
            "/v1/connect/intentions/exact?source=web&destination=db".to_string(),
            "intentions:write",
        ),
        ("GET", "/v1/kv/app/config".to_string(), "key:read"),
        ("GET", "/v1/snapshot".to_string(), "acl:write"),
        ("GET", "/v1/acl/tokens".to_string(), "acl:read"),
    ] {
        let sep = if path.contains('?') { '&' } else { '?' };
        let body = (method == "PUT").then(|| br#"{"Action":"allow"}"#.to_vec());
        let r = agent
            .request(method, &format!("{path}{sep}token={web}"), body)
            .await?;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
        assert!(
            r.text()
                .contains(&format!("lacks permission '{permission}'")),
            "{method} {path}: {}",
            r.text()
        );
    }
    let unknown = agent
        .get("/v1/kv/app/config?token=11111111-2222-3333-4444-555555555555")
        .await?;
    assert_eq!(
        (unknown.status, unknown.text()),
        (403, "ACL not found".into())
    );

    // A token stops working at its expiry.
    let short = agent
        .put_json(
            &format!("/v1/acl/token?token={ROOT}"),
            &json!({"ServiceIdentities": [{"ServiceName": "web"}], "ExpirationTTL": "2s"}),
        )
        .await?;
    short.expect_status(200)?;
    let short = short.json()?["SecretID"].as_str().unwrap().to_string();
    let leaf = format!("/v1/agent/connect/ca/leaf/web?token={short}");
    agent.get(&leaf).await?.expect_status(200)?;
    eventually(Duration::from_secs(10), async || -> Result<bool> {
        let r = agent.get(&leaf).await?;
        Ok(r.status == 403 && r.text() == "ACL not found")
    })
    .await?;

    // Every server gone: the client agent keeps the tokens it has resolved and refuses the others.
    for i in 0..3 {
        cluster.kill(i);
    }
    let agent = cluster.agent(client)?;
    agent
        .get(&format!("/v1/agent/connect/ca/leaf/web?token={web}"))
        .await?
        .expect_status(200)?;
    let never_seen = agent
        .get(&format!("/v1/agent/connect/ca/leaf/web?token={ROOT}x"))
        .await?;
    assert_eq!(never_seen.status, 403, "{}", never_seen.text());
    Ok(())
}

/// A token holding `ServiceIdentities` for `service`, made with the management token.
async fn identity_token(agent: &DevAgent, service: &str) -> Result<String> {
    let r = agent
        .put_json(
            &format!("/v1/acl/token?token={ROOT}"),
            &json!({"ServiceIdentities": [{"ServiceName": service}]}),
        )
        .await?;
    r.expect_status(200)?;
    Ok(r.json()?["SecretID"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_run_on_service_identity_tokens_under_default_deny() -> Result<()> {
    let acl = format!(
        r#"acl {{ enabled = true  default_policy = "deny"  tokens {{ initial_management = "{ROOT}" }} }}
           default_intention_policy = "deny""#
    );
    let agent = DevAgent::builder().arg("-hcl").arg(acl).start()?;
    agent.wait_for_acls(ROOT).await?;
    let addr = agent.addr().to_string();
    let greeting = identity_token(&agent, "greeting").await?;
    let test = identity_token(&agent, "test").await?;

    // The application registers with its own token; its sidecar reads the token from a file.
    let app_port = free_port()?;
    let _app = greeting_app(app_port, "acl-host")?;
    agent
        .put_json(
            &format!("/v1/agent/service/register?token={greeting}"),
            &json!({"ID": "greeting-1", "Name": "greeting", "Port": app_port, "Address": "127.0.0.1",
                    "Connect": {"SidecarService": {"Port": free_port()?}}}),
        )
        .await?
        .expect_status(200)?;
    let dir = TempDir::new()?;
    let token_file = dir.path().join("greeting.token");
    std::fs::write(&token_file, format!("{greeting}\n"))?;
    let token_file = token_file.to_string_lossy().to_string();
    let sidecar = sidecar_for_with("greeting-1", &addr, &["-token-file", &token_file])?;

    // The test proxy runs on `test`'s token; the operator allows test -> greeting with the management token.
    agent
        .put_json(
            &format!("/v1/connect/intentions/exact?source=test&destination=greeting&token={ROOT}"),
            &json!({"Action": "allow"}),
        )
        .await?
        .expect_status(200)?;
    let upstream = free_port()?;
    let upstream_arg = format!("greeting:{upstream}");
    let client = Spawned::start(
        &weft_binary()?,
        &[
            "connect",
            "proxy",
            "-service",
            "test",
            "-upstream",
            &upstream_arg,
            "-http-addr",
            &addr,
            "-token",
            &test,
        ]
        .map(String::from),
    )?;
    eventually(Duration::from_secs(30), async || -> Result<bool> {
        let (code, body) = http_get(upstream)?;
        Ok(code == 200 && body.contains("acl-host"))
    })
    .await
    .with_context(|| {
        format!(
            "sidecar:\n{}\nclient:\n{}",
            sidecar.output(),
            client.output()
        )
    })?;

    // `test`'s token cannot stand in for `greeting`: a proxy claiming to be `greeting` is refused its leaf.
    let other_port = free_port()?;
    let other_arg = format!("greeting:{other_port}");
    let impostor = Spawned::start(
        &weft_binary()?,
        &[
            "connect",
            "proxy",
            "-service",
            "greeting",
            "-upstream",
            &other_arg,
            "-http-addr",
            &addr,
            "-token",
            &test,
        ]
        .map(String::from),
    )?;
    eventually(Duration::from_secs(15), async || -> Result<bool> {
        Ok(impostor
            .output()
            .contains("lacks permission 'service:write'"))
    })
    .await
    .with_context(|| format!("impostor:\n{}", impostor.output()))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_set_through_the_api_outlive_a_restart_with_persistence() -> Result<()> {
    let acl = format!(
        r#"acl {{ enabled = true  default_policy = "deny"  enable_token_persistence = true
                 tokens {{ initial_management = "{ROOT}"  default = "{ROOT}" }} }}
           default_intention_policy = "allow""#
    );
    let mut cluster = Cluster::start_with(1, 0, vec!["-hcl".into(), acl]).await?;
    cluster.agent(0)?.wait_for_acls(ROOT).await?;
    let agent = cluster.agent(0)?;
    let reader = agent
        .put_json(
            &format!("/v1/acl/policy?token={ROOT}"),
            &json!({"Name": "kv-read", "Rules": "key_prefix \"\" { policy = \"read\" }"}),
        )
        .await?;
    reader.expect_status(200)?;
    let token = agent
        .put_json(
            &format!("/v1/acl/token?token={ROOT}"),
            &json!({"Policies": [{"Name": "kv-read"}]}),
        )
        .await?;
    token.expect_status(200)?;
    let secret = token.json()?["SecretID"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    agent
        .put_json(&format!("/v1/kv/k?token={ROOT}"), &json!("v"))
        .await?
        .expect_status(200)?;
    // The API's default token (read-only) replaces the configured one (management), and stays after a restart.
    agent
        .put_json(
            &format!("/v1/agent/token/default?token={ROOT}"),
            &json!({"Token": secret}),
        )
        .await?
        .expect_status(200)?;
    cluster.kill(0);
    cluster.restart(0)?;
    cluster.wait_for_leader().await?;
    let agent = cluster.agent(0)?;
    eventually(Duration::from_secs(20), async || -> Result<bool> {
        Ok(agent.get("/v1/kv/k").await?.status == 200)
    })
    .await?;
    let write = agent.put_json("/v1/kv/k", &json!("w")).await?;
    assert_eq!(write.status, 403, "{}", write.text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acl_cli_bootstraps_and_manages_tokens_policies_and_roles() -> Result<()> {
    let acl =
        r#"acl { enabled = true  default_policy = "deny" }  default_intention_policy = "allow""#;
    let agent = DevAgent::builder().arg("-hcl").arg(acl).start()?;
    let addr = format!("-http-addr={}", agent.addr());
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.push(&addr);
        Cli::new().args(&all).run()
    };
    // Bootstrap once (the leader sets ACLs up first), JSON output.
    let boot = eventually(
        Duration::from_secs(20),
        async || -> Result<Option<CliOutput>> {
            let out = run(&["acl", "bootstrap", "-format", "json"])?;
            Ok((out.code() == 0).then_some(out))
        },
    )
    .await?;
    let root: serde_json::Value = serde_json::from_str(&boot.stdout)?;
    let root = root["SecretID"].as_str().unwrap_or_default().to_string();
    let again = run(&["acl", "bootstrap"])?;
    assert_eq!(again.code(), 1);
    assert!(
        again.stderr.contains("ACL bootstrap no longer allowed"),
        "{}",
        again.stderr
    );

    let dir = TempDir::new()?;
    let rules = dir.path().join("rules.hcl");
    std::fs::write(&rules, "key_prefix \"app/\" {\n  policy = \"read\"\n}\n")?;
    let rules_arg = format!("@{}", rules.display());
    let p = run(&[
        "acl", "policy", "create", "-name", "app-read", "-rules", &rules_arg, "-token", &root,
    ])?;
    assert_eq!(p.code(), 0, "{}", p.stderr);
    assert!(p.stdout.contains("Name:         app-read"), "{}", p.stdout);
    let bad = run(&[
        "acl",
        "policy",
        "create",
        "-name",
        "bad",
        "-rules",
        "sevice \"x\" {}",
        "-token",
        &root,
    ])?;
    assert_eq!(bad.code(), 1);
    assert!(
        bad.stderr.contains("unknown rule \"sevice\""),
        "{}",
        bad.stderr
    );
    let r = run(&[
        "acl",
        "role",
        "create",
        "-name",
        "reader",
        "-policy-name",
        "app-read",
        "-token",
        &root,
    ])?;
    assert_eq!(r.code(), 0, "{}", r.stderr);
    // Update keeps the links it is not given and replaces the kinds it is.
    let role = run(&[
        "acl", "role", "read", "-name", "reader", "-format", "json", "-token", &root,
    ])?;
    let role: serde_json::Value = serde_json::from_str(&role.stdout)?;
    let role_id = role["ID"].as_str().unwrap_or_default().to_string();
    let updated = run(&[
        "acl",
        "role",
        "update",
        "-id",
        &role_id,
        "-description",
        "reads app",
        "-service-identity",
        "api",
        "-format",
        "json",
        "-token",
        &root,
    ])?;
    assert_eq!(updated.code(), 0, "{}", updated.stderr);
    let updated: serde_json::Value = serde_json::from_str(&updated.stdout)?;
    assert_eq!(updated["Name"], "reader");
    assert_eq!(updated["Description"], "reads app");
    assert_eq!(updated["Policies"][0]["Name"], "app-read");
    assert_eq!(updated["ServiceIdentities"][0]["ServiceName"], "api");

    let t = run(&[
        "acl",
        "token",
        "create",
        "-description",
        "app reader",
        "-role-name",
        "reader",
        "-service-identity",
        "web",
        "-format",
        "json",
        "-token",
        &root,
    ])?;
    assert_eq!(t.code(), 0, "{}", t.stderr);
    let t: serde_json::Value = serde_json::from_str(&t.stdout)?;
    let (accessor, secret) = (
        t["AccessorID"].as_str().unwrap_or_default().to_string(),
        t["SecretID"].as_str().unwrap_or_default().to_string(),
    );
    let me = run(&["acl", "token", "read", "-self", "-token", &secret])?;
    assert_eq!(me.code(), 0, "{}", me.stderr);
    assert!(
        me.stdout.contains(&format!("AccessorID:       {accessor}")),
        "{}",
        me.stdout
    );
    assert!(
        me.stdout.contains("web (Datacenters: all)"),
        "{}",
        me.stdout
    );
    let list = run(&["acl", "token", "list", "-token", &root])?;
    assert!(list.stdout.contains(&accessor), "{}", list.stdout);
    // The token reads app/ keys through its role, and nothing else.
    agent
        .put(&format!("/v1/kv/app/x?token={root}"), "v")
        .await?
        .expect_status(200)?;
    let kv = Cli::new()
        .args(&["kv", "get", &addr, "-token", &secret, "app/x"])
        .run()?;
    assert_eq!((kv.code(), kv.stdout.trim()), (0, "v"), "{}", kv.stderr);
    let refused = run(&["acl", "token", "list", "-token", &secret])?;
    assert_eq!(refused.code(), 1);
    assert!(
        refused.stderr.contains("lacks permission 'acl:read'"),
        "{}",
        refused.stderr
    );

    let set = run(&[
        "acl",
        "set-agent-token",
        "default",
        &secret,
        "-token",
        &root,
    ])?;
    assert_eq!(set.code(), 0, "{}", set.stderr);
    agent.get("/v1/kv/app/x").await?.expect_status(200)?;
    let del = run(&[
        "acl",
        "token",
        "delete",
        "-accessor-id",
        &accessor,
        "-token",
        &root,
    ])?;
    assert_eq!(del.code(), 0, "{}", del.stderr);
    let gone = agent.get(&format!("/v1/kv/app/x?token={secret}")).await?;
    assert_eq!(gone.status, 403);
    Ok(())
}

/// `weft acl auth-method|binding-rule create`, `weft login` and `weft logout` against a real agent: a JWT signed by
/// a key whose JWKS is a file becomes a token with the service identity the binding rule names, written to a file
/// only its owner reads; a JWT from another key is refused; logout deletes the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_cli_trades_a_jwt_for_a_service_token() -> Result<()> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let acl = format!(
        r#"acl {{ enabled = true  default_policy = "deny"  tokens {{ initial_management = "{ROOT}" }} }}
           default_intention_policy = "deny""#
    );
    let agent = DevAgent::builder().arg("-hcl").arg(&acl).start()?;
    agent.wait_for_acls(ROOT).await?;
    let addr = format!("-http-addr={}", agent.addr());
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.push(&addr);
        Cli::new().args(&all).run()
    };
    let rng = ring::rand::SystemRandom::new();
    let key = |rng: &ring::rand::SystemRandom| -> Result<EcdsaKeyPair> {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, rng)
            .map_err(|_| anyhow::anyhow!("keygen"))?;
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), rng)
            .map_err(|_| anyhow::anyhow!("key"))
    };
    let (issuer, stranger) = (key(&rng)?, key(&rng)?);
    let dir = TempDir::new()?;
    let point = issuer.public_key().as_ref();
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])}]});
    std::fs::write(dir.path().join("jwks.json"), jwks.to_string())?;
    let config = json!({
        "JWKSURL": format!("file://{}", dir.path().join("jwks.json").display()),
        "JWTSupportedAlgs": ["ES256"], "BoundAudiences": ["weft"],
        "ClaimMappings": {"service": "service"},
    });
    let config_file = dir.path().join("method.json");
    std::fs::write(&config_file, config.to_string())?;
    let config_arg = format!("@{}", config_file.display());
    let m = run(&[
        "acl",
        "auth-method",
        "create",
        "-type",
        "jwt",
        "-name",
        "ci",
        "-max-token-ttl",
        "1h",
        "-config",
        &config_arg,
        "-token",
        ROOT,
    ])?;
    assert_eq!(m.code(), 0, "{}", m.stderr);
    assert!(m.stdout.contains("Type:          jwt"), "{}", m.stdout);
    let r = run(&[
        "acl",
        "binding-rule",
        "create",
        "-method",
        "ci",
        "-bind-type",
        "service",
        "-bind-name",
        "${value.service}",
        "-format",
        "json",
        "-token",
        ROOT,
    ])?;
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let listed = run(&[
        "acl",
        "binding-rule",
        "list",
        "-method",
        "ci",
        "-token",
        ROOT,
    ])?;
    assert!(
        listed.stdout.contains("${value.service}"),
        "{}",
        listed.stdout
    );

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let jwt = |signer: &EcdsaKeyPair| -> Result<String> {
        let h = URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "typ": "JWT"}).to_string());
        let p = URL_SAFE_NO_PAD
            .encode(json!({"aud": "weft", "exp": now + 600, "service": "web"}).to_string());
        let msg = format!("{h}.{p}");
        let sig = signer
            .sign(&ring::rand::SystemRandom::new(), msg.as_bytes())
            .map_err(|_| anyhow::anyhow!("sign"))?;
        Ok(format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())))
    };
    let (bearer, sink) = (dir.path().join("job.jwt"), dir.path().join("web.token"));
    let (bearer_arg, sink_arg) = (bearer.display().to_string(), sink.display().to_string());
    let login = |extra: &[&str]| {
        let mut args = vec![
            "login",
            "-method",
            "ci",
            "-bearer-token-file",
            &bearer_arg,
            "-token-sink-file",
            &sink_arg,
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    std::fs::write(&bearer, jwt(&stranger)?)?;
    let refused = login(&[])?;
    assert_eq!(refused.code(), 1);
    assert!(
        refused.stderr.contains("Permission denied"),
        "{}",
        refused.stderr
    );
    assert!(!sink.exists());
    std::fs::write(&bearer, jwt(&issuer)?)?;
    let login = login(&["-meta", "job=42"])?;
    assert_eq!(login.code(), 0, "{}", login.stderr);
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&sink)?.permissions().mode() & 0o777,
            0o600
        );
    }
    let secret = std::fs::read_to_string(&sink)?;
    agent
        .get(&format!("/v1/agent/connect/ca/leaf/web?token={secret}"))
        .await?
        .expect_status(200)?;
    let db = agent
        .get(&format!("/v1/agent/connect/ca/leaf/db?token={secret}"))
        .await?;
    assert_eq!(db.status, 403);
    let out = run(&["logout", "-token-file", &sink_arg])?;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let gone = agent
        .get(&format!("/v1/acl/token/self?token={secret}"))
        .await?;
    assert_eq!(
        (gone.status, gone.text()),
        (403, "ACL not found".to_string())
    );
    Ok(())
}

/// Services from config files are written to the catalog with their own `token` (else the agent's
/// `config_file_service_registration` token, else its default): under default deny, one whose token lacks
/// `service:write` is kept locally but stays out of the catalog until its token exists, as in Consul.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_services_register_with_their_own_token() -> Result<()> {
    const WEB: &str = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
    let config = format!(
        r#"acl {{ enabled = true  default_policy = "deny"  tokens {{ initial_management = "{ROOT}" }} }}
           default_intention_policy = "deny"
           service {{ name = "web"  port = 8080  token = "{WEB}"  connect {{ sidecar_service {{}} }} }}
           service {{ name = "db"  port = 5432 }}"#
    );
    let agent = DevAgent::builder().arg("-hcl").arg(config).start()?;
    agent.wait_for_acls(ROOT).await?;
    async fn catalog(agent: &DevAgent) -> Result<serde_json::Value> {
        agent
            .get(&format!("/v1/catalog/services?token={ROOT}"))
            .await?
            .json()
    }
    // web's token does not exist yet; db has none (anonymous): neither is in the catalog, both are local.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let services = catalog(&agent).await?;
    anyhow::ensure!(
        services.get("web").is_none() && services.get("db").is_none(),
        "{services}"
    );
    let local = agent
        .get(&format!("/v1/agent/services?token={ROOT}"))
        .await?
        .json()?;
    anyhow::ensure!(
        local.get("web").is_some() && local.get("db").is_some(),
        "{local}"
    );
    // Once web's token exists with web's identity, anti-entropy writes web and its sidecar; db stays out.
    let made = agent
        .put_json(
            &format!("/v1/acl/token?token={ROOT}"),
            &json!({"SecretID": WEB, "ServiceIdentities": [{"ServiceName": "web"}]}),
        )
        .await?;
    made.expect_status(200)?;
    eventually(Duration::from_secs(10), async || -> Result<()> {
        let services = catalog(&agent).await?;
        anyhow::ensure!(
            services.get("web").is_some() && services.get("web-sidecar-proxy").is_some(),
            "{services}"
        );
        Ok(())
    })
    .await
    .with_context(|| agent.recent_output())?;
    let services = catalog(&agent).await?;
    anyhow::ensure!(services.get("db").is_none(), "{services}");
    Ok(())
}
