//! The agent in-process: sidecar expansion, and leaf certificates renewed on an injected (paused) clock and
//! re-issued after a root rotation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use std::time::Duration;
use weft_server::ServerConfig;
use weft_types::lenient::decode;

fn config() -> AgentConfig {
    AgentConfig {
        node_name: "n1".into(),
        node_id: weft_types::ids::new_uuid(),
        datacenter: "dc1".into(),
        advertise_addr: "127.0.0.1".into(),
        node_meta: Default::default(),
        server: true,
        server_port: 8300,
        root_change_jitter: Duration::from_secs(30),
        state_dir: None,
        leaf_idle_expiry: DEFAULT_LEAF_IDLE_EXPIRY,
        script_checks: Default::default(),
        check_output_max_size: 0,
        locality: None,
    }
}

async fn agent_with(config: AgentConfig) -> Agent {
    let server = Server::new(ServerConfig::new("dc1", "n1", "127.0.0.1:8300"));
    let agent = Agent::new(config, server);
    agent.start().await.unwrap();
    agent
}

async fn agent() -> Agent {
    agent_with(config()).await
}

#[tokio::test]
async fn sidecar_service_is_expanded() {
    let a = agent().await;
    let def: ServiceDefinition = decode(
        br#"{"ID":"web1","Name":"web","Port":8080,"Connect":{"SidecarService":{"Proxy":{"Upstreams":[{"DestinationName":"db","LocalBindPort":9191}]}}}}"#,
    )
    .unwrap();
    a.register_service(&def, false, Source::Api).await.unwrap();
    let side = a.service("web1-sidecar-proxy").unwrap();
    assert_eq!(
        (side.kind.as_str(), side.service.as_str(), side.port),
        ("connect-proxy", "web-sidecar-proxy", 21000)
    );
    assert_eq!(side.proxy.destination_service_id, "web1");
    assert_eq!(
        (
            side.proxy.local_service_address.as_str(),
            side.proxy.local_service_port
        ),
        ("127.0.0.1", 8080)
    );
    assert_eq!(side.proxy.upstreams[0].destination_type, "service");
    let names: Vec<String> = a
        .checks()
        .into_iter()
        .filter(|c| c.service_id == "web1-sidecar-proxy")
        .map(|c| c.name)
        .collect();
    assert!(names.contains(&"Connect Sidecar Listening".to_string()));
    assert!(names.contains(&"Connect Sidecar Aliasing web1".to_string()));
    // Re-registering keeps the port; a second service gets the next one.
    a.register_service(&def, false, Source::Api).await.unwrap();
    assert_eq!(a.service("web1-sidecar-proxy").unwrap().port, 21000);
    let other: ServiceDefinition =
        decode(br#"{"ID":"web2","Name":"web","Port":8081,"Connect":{"SidecarService":{}}}"#)
            .unwrap();
    a.register_service(&other, false, Source::Api)
        .await
        .unwrap();
    assert_eq!(a.service("web2-sidecar-proxy").unwrap().port, 21001);
    assert_eq!(a.server().read().connect_instances("web").len(), 2);
    // Deregistering the parent removes its sidecar.
    a.deregister_service("web1").await.unwrap();
    assert!(a.service("web1-sidecar-proxy").is_none());
    let bad: ServiceDefinition =
        decode(br#"{"Name":"x","Port":1,"Connect":{"SidecarService":{"ID":"mine"}}}"#).unwrap();
    assert!(a
        .register_service(&bad, false, Source::Api)
        .await
        .unwrap_err()
        .to_string()
        .contains("cannot specify an ID"));
    assert!(
        a.service("x").is_none(),
        "a refused sidecar registers nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn leaf_renews_on_a_fast_clock() {
    let a = agent().await;
    let first = a
        .leaf_certificate("web", None, 0, Duration::from_secs(5))
        .await
        .unwrap();
    let info = weft_ca::leaf::inspect(&first.cert_pem).unwrap();
    assert!(info.uris[0].ends_with("/ns/default/dc/dc1/svc/web"));
    // The paused clock jumps to the renewal time (60-90 % of 72 h) as soon as nothing else is runnable.
    let renewed = a
        .leaf_certificate(
            "web",
            None,
            first.modify_index,
            Duration::from_secs(80 * 3600),
        )
        .await
        .unwrap();
    assert!(renewed.modify_index > first.modify_index);
    assert_ne!(renewed.serial_number, first.serial_number);
    assert_ne!(
        renewed.private_key_pem, first.private_key_pem,
        "renewal generates a new key"
    );
    // A reader without an index gets the current certificate at once.
    let now = a
        .leaf_certificate("web", None, 0, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(now.modify_index >= renewed.modify_index);
}

#[tokio::test(start_paused = true)]
async fn root_rotation_reissues_leaves() {
    let a = agent().await;
    let first = a
        .leaf_certificate("api", None, 0, Duration::from_secs(5))
        .await
        .unwrap();
    let old_key = a
        .server()
        .read()
        .ca()
        .active_root()
        .unwrap()
        .root
        .signing_key_id
        .clone();
    assert_eq!(
        weft_ca::leaf::inspect(&first.cert_pem)
            .unwrap()
            .authority_key_id,
        old_key
    );
    let wire: weft_ca::CaConfigWire = serde_json::from_str(
        r#"{"Provider":"consul","Config":{"PrivateKeyType":"ec","PrivateKeyBits":384}}"#,
    )
    .unwrap();
    a.server().set_ca_configuration(&wire).await.unwrap();
    let new_key = a
        .server()
        .read()
        .ca()
        .active_root()
        .unwrap()
        .root
        .signing_key_id
        .clone();
    assert_ne!(new_key, old_key);
    assert_eq!(
        a.server().read().ca().roots.len(),
        2,
        "the old root stays listed"
    );
    let reissued = a
        .leaf_certificate("api", None, first.modify_index, Duration::from_secs(60))
        .await
        .unwrap();
    let info = weft_ca::leaf::inspect(&reissued.cert_pem).unwrap();
    assert_eq!(info.authority_key_id, new_key);
    assert_eq!(
        reissued.cert_pem.matches("BEGIN CERTIFICATE").count(),
        2,
        "leaf + cross-signed intermediate"
    );
}

#[tokio::test]
async fn leaf_requests_are_validated() {
    let a = agent().await;
    assert!(matches!(
        a.leaf_certificate("bad name", None, 0, Duration::from_secs(1))
            .await,
        Err(AgentError::BadRequest(_))
    ));
}

/// A leaf nobody asks for within the idle period is dropped, and its renewal task ends; one that is asked for, or that a
/// blocking query waits on, is kept.
#[tokio::test(start_paused = true)]
async fn idle_leaves_and_their_renewal_tasks_are_dropped() {
    const IDLE: Duration = Duration::from_secs(600);
    let a = agent_with(AgentConfig {
        leaf_idle_expiry: IDLE,
        ..config()
    })
    .await;
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let baseline = tasks();
    let leaf = |name: &str| {
        let (a, name) = (a.clone(), name.to_string());
        async move {
            a.leaf_certificate(&name, None, 0, Duration::from_secs(5))
                .await
                .unwrap()
        }
    };
    for i in 0..50 {
        leaf(&format!("svc-{i}")).await;
    }
    let kept = leaf("kept").await;
    let waited = leaf("waited").await;
    assert_eq!((a.inner.leaves.len(), tasks()), (52, baseline + 52));

    // A blocking query on "waited" for three idle periods (no newer certificate comes meanwhile), while "kept" is
    // asked for every half period.
    let blocking = tokio::spawn({
        let (a, index) = (a.clone(), waited.modify_index);
        async move {
            a.leaf_certificate("waited", None, index, 3 * IDLE)
                .await
                .unwrap()
        }
    });
    for _ in 0..6 {
        tokio::time::sleep(IDLE / 2).await;
        assert_eq!(leaf("kept").await.serial_number, kept.serial_number);
    }
    assert_eq!(blocking.await.unwrap().serial_number, waited.serial_number);
    assert_eq!(
        (a.inner.leaves.len(), tasks()),
        (2, baseline + 2),
        "the 50 idle leaves and their tasks are gone"
    );

    // Nobody asks any more: the rest go too, and the next request issues a new certificate.
    tokio::time::sleep(IDLE + Duration::from_secs(1)).await;
    assert_eq!((a.inner.leaves.len(), tasks()), (0, baseline));
    assert_ne!(leaf("kept").await.serial_number, kept.serial_number);
    assert_eq!((a.inner.leaves.len(), tasks()), (1, baseline + 1));
}

#[tokio::test]
async fn saved_registrations_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!(
        "weft-agent-state-{}-{}",
        std::process::id(),
        weft_types::ids::new_uuid()
    ));
    let a = agent_with(AgentConfig {
        state_dir: Some(dir.join("agent")),
        ..config()
    })
    .await;
    let def: ServiceDefinition = decode(br#"{"Name":"web","Port":80}"#).unwrap();
    a.register_service(&def, false, Source::Api).await.unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.join("agent")), 0o700);
    assert_eq!(mode(&dir.join("agent/local.json")), 0o600);
    let names: Vec<_> = std::fs::read_dir(dir.join("agent"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["local.json"], "no temporary file is left behind");

    // A state dir an earlier version left open is tightened when the registrations are restored.
    for (path, wide) in [
        (dir.join("agent"), 0o755),
        (dir.join("agent/local.json"), 0o644),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(wide)).unwrap();
    }
    let restarted = agent_with(AgentConfig {
        state_dir: Some(dir.join("agent")),
        ..config()
    })
    .await;
    assert_eq!(restarted.restore_saved().await.unwrap(), 1);
    assert_eq!(mode(&dir.join("agent")), 0o700);
    assert_eq!(mode(&dir.join("agent/local.json")), 0o600);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A check's status and output once its first run has reported (the runner reports on its first tick).
async fn settled(a: &Agent, id: &str) -> HealthCheck {
    for _ in 0..200 {
        if let Some(c) = a.checks().into_iter().find(|c| c.check_id == id) {
            if !c.output.is_empty() {
                return c;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("check {id} never reported: {:?}", a.checks());
}

fn script(id: &str, script: &str, extra: &str) -> CheckDefinition {
    decode(
        format!(
            r#"{{"ID":"{id}","Name":"{id}","Args":["/bin/sh","-c",{}],"Interval":"10s"{extra}}}"#,
            serde_json::to_string(script).unwrap()
        )
        .as_bytes(),
    )
    .unwrap()
}

#[tokio::test]
async fn script_checks_are_refused_unless_the_operator_enables_them() {
    let a = agent().await;
    let e = a
        .register_check(&script("s", "exit 0", ""), Source::Api)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Scripts are disabled on this agent from remote calls"),
        "{e}"
    );
    let e = a
        .register_check(&script("s", "exit 0", ""), Source::Config)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("enable_local_script_checks"), "{e}");
    assert!(
        a.checks().iter().all(|c| c.check_id != "s"),
        "nothing registered"
    );
    // Local only: config files may, the API may not.
    let local = agent_with(AgentConfig {
        script_checks: ScriptChecks {
            from_api: false,
            from_config: true,
        },
        ..config()
    })
    .await;
    local
        .register_check(&script("cfg", "exit 0", ""), Source::Config)
        .await
        .unwrap();
    assert!(local
        .register_check(&script("api", "exit 0", ""), Source::Api)
        .await
        .is_err());
}

#[tokio::test]
async fn script_checks_map_exit_codes_bound_output_and_time() {
    let a = agent_with(AgentConfig {
        script_checks: ScriptChecks {
            from_api: true,
            from_config: true,
        },
        ..config()
    })
    .await;
    for (id, body, want) in [
        ("ok", "echo fine; exit 0", CheckStatus::Passing),
        ("warn", "echo degraded >&2; exit 1", CheckStatus::Warning),
        ("bad", "echo broken; exit 2", CheckStatus::Critical),
    ] {
        a.register_check(&script(id, body, ""), Source::Api)
            .await
            .unwrap();
        let c = settled(&a, id).await;
        assert_eq!(c.status, want, "{id}: {}", c.output);
        assert_eq!(c.check_type, "script");
    }
    assert!(settled(&a, "ok").await.output.contains("fine"));
    assert!(
        settled(&a, "warn").await.output.contains("degraded"),
        "stderr is kept too"
    );
    // A megabyte of output keeps 4 KB (and the script is not blocked on a full pipe).
    a.register_check(
        &script("loud", "head -c 1000000 /dev/zero | tr '\\0' x; exit 0", ""),
        Source::Api,
    )
    .await
    .unwrap();
    let c = settled(&a, "loud").await;
    assert_eq!(c.status, CheckStatus::Passing);
    assert!(c.output.len() < 4200, "{} bytes kept", c.output.len());
    // Past its timeout the script is killed and the check is critical.
    let started = std::time::Instant::now();
    a.register_check(
        &script("slow", "sleep 30", r#","Timeout":"1s""#),
        Source::Api,
    )
    .await
    .unwrap();
    let c = settled(&a, "slow").await;
    assert_eq!(c.status, CheckStatus::Critical);
    assert_eq!(c.output, "Timed out (1s) running check");
    assert!(started.elapsed() < Duration::from_secs(10));
    // A program that does not exist.
    let missing: CheckDefinition =
        decode(br#"{"ID":"none","Name":"none","Args":["/nonexistent/check"],"Interval":"10s"}"#)
            .unwrap();
    a.register_check(&missing, Source::Api).await.unwrap();
    let c = settled(&a, "none").await;
    assert_eq!(c.status, CheckStatus::Critical);
    assert!(c.output.contains("Failed to run"), "{}", c.output);
}

/// Docker checks against a real container: a `FROM scratch` image holding only a shell (`/weft` is `/bin/sh`),
/// kept running by an open stdin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_checks_run_in_the_container_and_map_exit_codes() {
    struct Running(String);
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", &self.0])
                .output();
        }
    }
    assert!(
        weft_testkit::docker::available(),
        "this test needs a Docker daemon"
    );
    let tag = format!("weft-shell:{}", std::process::id());
    let _image = weft_testkit::docker::Image::build(std::path::Path::new("/bin/sh"), &tag).unwrap();
    let name = format!("weft-docker-check-{}", std::process::id());
    let out = std::process::Command::new("docker")
        .args(["run", "-d", "-i", "--name", &name, &tag])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _running = Running(name.clone());

    let docker = |id: &str, container: &str, args: &str| -> CheckDefinition {
        decode(
            format!(
                r#"{{"ID":"{id}","Name":"{id}","DockerContainerID":"{container}","Shell":"/weft","Args":{args},"Interval":"10s"}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    };
    let refusing = agent().await;
    let e = refusing
        .register_check(&docker("d", &name, r#"["exit 0"]"#), Source::Api)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("Scripts are disabled"), "{e}");
    let a = agent_with(AgentConfig {
        script_checks: ScriptChecks {
            from_api: true,
            from_config: true,
        },
        ..config()
    })
    .await;
    for (id, args, want, says) in [
        (
            "ok",
            r#"["echo", "inside;", "exit 0"]"#,
            CheckStatus::Passing,
            "inside",
        ),
        (
            "warn",
            r#"["echo degraded >&2; exit 1"]"#,
            CheckStatus::Warning,
            "degraded",
        ),
        (
            "bad",
            r#"["echo broken; exit 3"]"#,
            CheckStatus::Critical,
            "broken",
        ),
    ] {
        a.register_check(&docker(id, &name, args), Source::Api)
            .await
            .unwrap();
        let c = settled(&a, id).await;
        assert_eq!(c.status, want, "{id}: {}", c.output);
        assert!(c.output.contains(says), "{id}: {}", c.output);
        assert_eq!(c.check_type, "docker");
    }
    a.register_check(
        &docker("gone", "no-such-container", r#"["exit 0"]"#),
        Source::Api,
    )
    .await
    .unwrap();
    let c = settled(&a, "gone").await;
    assert_eq!(c.status, CheckStatus::Critical);
    assert!(c.output.contains("No such container"), "{}", c.output);
    // Args are required.
    let bad: CheckDefinition = decode(
        format!(r#"{{"ID":"x","Name":"x","DockerContainerID":"{name}","Interval":"10s"}}"#)
            .as_bytes(),
    )
    .unwrap();
    assert!(a.register_check(&bad, Source::Api).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_checks_pass_on_answers_and_silence_and_fail_on_errors() {
    let a = agent().await;
    // An echo server, a socket that never answers, and a port nothing listens on (ICMP port unreachable).
    let echo = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = echo.recv_from(&mut buf).await {
            let _ = echo.send_to(&buf[..n], from).await;
        }
    });
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let closed = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    for (id, addr, want, says) in [
        ("echo", echo_addr, CheckStatus::Passing, "answered"),
        (
            "silent",
            silent.local_addr().unwrap(),
            CheckStatus::Passing,
            "no answer",
        ),
        ("closed", closed, CheckStatus::Critical, "refused"),
    ] {
        let def: CheckDefinition = decode(
            format!(
                r#"{{"ID":"{id}","Name":"{id}","UDP":"{addr}","Interval":"10s","Timeout":"1s"}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        a.register_check(&def, Source::Api).await.unwrap();
        let c = settled(&a, id).await;
        assert_eq!(c.status, want, "{id}: {}", c.output);
        assert!(c.output.contains(says), "{id}: {}", c.output);
        assert_eq!(c.check_type, "udp");
    }
    drop(silent);
}

#[tokio::test]
async fn the_node_is_registered_with_its_locality() {
    let zone = weft_types::service::Locality {
        region: "us-west-2".into(),
        zone: "us-west-2d".into(),
    };
    let a = agent_with(AgentConfig {
        locality: Some(zone.clone()),
        ..config()
    })
    .await;
    let node = a.server().read().node("n1").cloned().unwrap();
    assert_eq!(node.locality, Some(zone));
    let json = serde_json::to_value(&node).unwrap();
    assert_eq!(json["Locality"]["Zone"], "us-west-2d");
    // Without one, the field is left out, as Consul does.
    let plain = agent().await;
    let json = serde_json::to_value(plain.server().read().node("n1").unwrap()).unwrap();
    assert!(json.get("Locality").is_none(), "{json}");
}
