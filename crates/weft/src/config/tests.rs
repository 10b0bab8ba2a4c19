//! Golden tests for the merge: which source wins, what is refused and how it is named.

#![allow(clippy::unwrap_used)]

use super::*;
use std::path::{Path, PathBuf};
use weft_types::DefaultPolicy;

/// A scratch directory removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!(
            "weft-config-{name}-{}-{}",
            std::process::id(),
            weft_types::ids::new_uuid()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn flags_with_dir(dir: &Path) -> AgentFlags {
    AgentFlags {
        dev: true,
        config_dir: vec![dir.to_path_buf()],
        ..Default::default()
    }
}

fn build(flags: &AgentFlags) -> Result<RuntimeConfig, Vec<String>> {
    ConfigBuilder::from_flags(flags)
        .build_and_validate()
        .map_err(|e| e.problems)
}

#[test]
fn flag_beats_file_beats_default() {
    let dir = Dir::new("precedence");
    dir.write(
        "a.json",
        r#"{"datacenter": "east", "node_name": "from-file"}"#,
    );
    let mut flags = flags_with_dir(&dir.0);
    let c = build(&flags).unwrap();
    assert_eq!(c.datacenter, "east");
    assert_eq!(c.node_name, "from-file");
    assert_eq!(c.http_addr.unwrap().port(), 8500, "the default");
    flags.node = Some("from-flag".into());
    flags.http_port = Some(0);
    let c = build(&flags).unwrap();
    assert_eq!(c.node_name, "from-flag");
    assert_eq!(c.datacenter, "east");
    assert_eq!(c.http_addr.unwrap().port(), 0);
}

#[test]
fn later_files_win_in_lexical_order_and_lists_append() {
    let dir = Dir::new("order");
    // Written out of order: the names, not the writing, decide.
    dir.write(
        "b.hcl",
        "datacenter = \"second\"\nnode_meta { rack = \"r2\" }\nservice {\n  name = \"db\"\n  port = 5432\n}\n",
    );
    dir.write(
        "a.json",
        r#"{"datacenter": "first", "node_meta": {"zone": "z1", "rack": "r1"},
            "services": [{"name": "web", "port": 80, "check": {"ttl": "10s"}}]}"#,
    );
    dir.write("c.txt", "this is not config and is skipped");
    let c = build(&flags_with_dir(&dir.0)).unwrap();
    assert_eq!(c.datacenter, "second");
    assert_eq!(
        c.node_meta.iter().collect::<Vec<_>>(),
        [
            (&"rack".to_string(), &"r2".to_string()),
            (&"zone".to_string(), &"z1".to_string())
        ]
    );
    let names: Vec<&str> = c.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["web", "db"]);
    assert_eq!(
        c.services[0].check.as_ref().unwrap().ttl,
        Some(std::time::Duration::from_secs(10))
    );
}

#[test]
fn hcl_as_consul_docs_write_it() {
    let dir = Dir::new("hcl");
    dir.write(
        "agent.hcl",
        r#"
datacenter = "dc1"            node_name = "node-1"
ports { http = 8501  dns = -1  server = 8310 }
default_intention_policy = "deny"
connect { leaf_root_change_jitter = "5s" }
service { name = "greeter"  port = 9090
  connect { sidecar_service {} }
}
service { name = "test" port = 8000
  connect { sidecar_service { proxy { upstreams = [{ destination_name = "greeter", local_bind_port = 8080 }] } } }
}
"#,
    );
    let c = build(&flags_with_dir(&dir.0)).unwrap();
    assert_eq!(c.node_name, "node-1");
    assert_eq!(c.http_addr.unwrap().port(), 8501);
    assert_eq!(c.dns_addr, None, "-1 disables DNS");
    assert_eq!(c.server_port, 8310);
    assert_eq!(c.default_policy, DefaultPolicy::Deny);
    assert_eq!(c.root_change_jitter, std::time::Duration::from_secs(5));
    assert_eq!(c.services.len(), 2);
    let test = &c.services[1];
    let upstreams = &test
        .connect
        .as_ref()
        .unwrap()
        .sidecar_service
        .as_ref()
        .unwrap()
        .proxy
        .as_ref()
        .unwrap()
        .upstreams;
    assert_eq!(upstreams[0].destination_name, "greeter");
    assert_eq!(upstreams[0].local_bind_port, 8080);
}

#[test]
fn unknown_keys_and_wrong_types_are_refused_naming_file_and_key() {
    let dir = Dir::new("refused");
    let a = dir.write("a.json", r#"{"ports": {"htp": 8500}}"#);
    let b = dir.write("b.hcl", "server = \"yes\"\n");
    let errors = build(&flags_with_dir(&dir.0)).err().unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(
        errors[0],
        format!("{}:ports.htp: unknown configuration key", a.display())
    );
    assert!(
        errors[1].starts_with(&format!("{}:server: invalid type", b.display())),
        "{errors:?}"
    );
    assert!(errors[1].contains("expected a boolean"), "{errors:?}");
}

#[test]
fn unparsable_and_missing_files_are_named() {
    let dir = Dir::new("broken");
    let bad = dir.write("bad.hcl", "ports {\n  http = \n}\n");
    let mut flags = flags_with_dir(&dir.0);
    flags.config_file = vec![dir.0.join("missing.json")];
    let errors = build(&flags).err().unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with(&format!("{}:", bad.display())),
        "{errors:?}"
    );
    assert!(errors[1].contains("missing.json: cannot read config file"));
}

#[test]
fn conflicting_settings_are_all_reported() {
    let flags = AgentFlags {
        bootstrap_expect: Some(3),
        node_id: Some("not-a-uuid".into()),
        log_level: Some("loud".into()),
        ..Default::default()
    };
    let errors = build(&flags).err().unwrap();
    for expected in [
        "bootstrap_expect can only be set on servers",
        "node ID must be a UUID",
        "log_level: invalid level",
        "data_dir cannot be empty",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{expected:?} missing from {errors:?}"
        );
    }
}

#[test]
fn node_meta_flags_and_fragments() {
    let flags = AgentFlags {
        dev: true,
        node_meta: vec!["rack:r9".into(), "os:linux".into()],
        hcl: vec!["node_meta { os = \"bsd\" zone = \"z\" }".into()],
        ..Default::default()
    };
    let c = build(&flags).unwrap();
    assert_eq!(c.node_meta.get("rack").map(String::as_str), Some("r9"));
    assert_eq!(c.node_meta.get("os").map(String::as_str), Some("linux"));
    assert_eq!(c.node_meta.get("zone").map(String::as_str), Some("z"));
    let bad = AgentFlags {
        dev: true,
        node_meta: vec!["novalue".into()],
        ..Default::default()
    };
    assert!(build(&bad).err().unwrap()[0].contains("-node-meta"));
}

#[test]
fn the_environment_sits_between_files_and_flags() {
    let dir = Dir::new("env");
    dir.write(
        "a.json",
        r#"{"datacenter": "file", "node_name": "file", "log_level": "warn"}"#,
    );
    let mut flags = flags_with_dir(&dir.0);
    flags.node = Some("flag".into());
    let key = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
    let env = |name: &str| match name {
        "WEFT_LOCAL_CONFIG" => Some(format!(
            r#"{{"datacenter": "env", "node_name": "env", "encrypt": "{key}"}}"#
        )),
        "CONSUL_LOCAL_CONFIG" => Some("log_level = \"debug\"".into()),
        _ => None,
    };
    let c = ConfigBuilder::from_flags_and_env(&flags, env)
        .build_and_validate()
        .unwrap();
    assert_eq!(c.datacenter, "env", "the environment beats files");
    assert_eq!(c.node_name, "flag", "flags beat the environment");
    assert_eq!(c.log_level, "debug", "HCL fragments work too");
    assert!(
        c.keyring.is_some(),
        "the gossip key can come from the environment"
    );
    let bad = |name: &str| (name == "WEFT_LOCAL_CONFIG").then(|| r#"{"nope": 1}"#.to_string());
    let errors = ConfigBuilder::from_flags_and_env(&flags, bad)
        .build_and_validate()
        .err()
        .unwrap();
    assert_eq!(
        errors,
        ConfigError {
            problems: vec!["WEFT_LOCAL_CONFIG:nope: unknown configuration key".into()]
        }
    );
}

#[test]
fn acl_settings_are_read_and_kept_apart_from_the_intention_default() {
    let flags = |hcl: &str| AgentFlags {
        dev: true,
        hcl: vec![hcl.into()],
        ..Default::default()
    };
    let c = build(&flags(
        r#"acl {
             enabled = true  default_policy = "deny"  down_policy = "deny"  token_ttl = "5s"
             enable_key_list_policy = true
             tokens { master = "8f246b77-f3e1-ff88-5b48-8ec93abf3e05"  default = "d" }
           }
           default_intention_policy = "allow""#,
    ))
    .unwrap();
    assert!(c.acl.enabled);
    assert_eq!(c.acl.default_policy, DefaultPolicy::Deny);
    assert_eq!(c.acl.down_policy, weft_server::DownPolicy::Deny);
    assert_eq!(c.acl.token_ttl, std::time::Duration::from_secs(5));
    assert!(c.acl.enable_key_list_policy);
    assert_eq!(
        c.acl.initial_management.as_deref(),
        Some("8f246b77-f3e1-ff88-5b48-8ec93abf3e05"),
        "`master` is the older name of initial_management"
    );
    assert_eq!(c.acl.tokens.default.as_deref(), Some("d"));
    assert_eq!(
        c.default_policy,
        DefaultPolicy::Allow,
        "intentions keep their own default"
    );
    for (bad, words) in [
        (
            r#"acl { default_policy = "deny" }"#,
            "default_intention_policy",
        ),
        (r#"acl { down_policy = "maybe" }"#, "acl.down_policy"),
        (r#"acl { tokens { initial_management = "root" } }"#, "UUID"),
        (
            r#"default_intention_policy = "perhaps""#,
            "default_intention_policy",
        ),
    ] {
        let errors = build(&flags(bad)).err().unwrap();
        assert!(
            errors.iter().any(|e| e.contains(words)),
            "{bad}: {errors:?}"
        );
    }
}

#[test]
fn security_settings_weft_cannot_honour_are_refused() {
    let flags = AgentFlags {
        dev: true,
        hcl: vec!["ports { https = 8501 }".into()],
        ..Default::default()
    };
    assert!(
        build(&flags).is_err(),
        "an HTTPS port Weft does not serve must be refused"
    );
}

#[test]
fn an_exposed_server_rpc_port_needs_tls_or_a_gossip_key() {
    let exposed = AgentFlags {
        server: true,
        bootstrap_expect: Some(3),
        data_dir: Some("/tmp/weft-exposed".into()),
        bind: Some("192.0.2.10".into()),
        ..Default::default()
    };
    let errors = build(&exposed).err().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("neither TLS nor a gossip key")),
        "{errors:?}"
    );
    let keyed = AgentFlags {
        encrypt: Some("pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=".into()),
        ..exposed.clone()
    };
    assert!(build(&keyed).is_ok());
    let opted_out = AgentFlags {
        hcl: vec!["allow_unauthenticated_rpc = true".into()],
        ..exposed.clone()
    };
    assert!(build(&opted_out).is_ok());
    let loopback = AgentFlags {
        bind: Some("127.0.0.1".into()),
        ..exposed
    };
    assert!(build(&loopback).is_ok());
}

#[test]
fn a_host_whose_address_is_not_known_in_advance_binds_through_get_private_ip() {
    let flags = |bind: &str| AgentFlags {
        dev: true,
        bind: Some(bind.into()),
        ..Default::default()
    };
    // Whatever routes this machine has, the template and 0.0.0.0 resolve alike: to the default route's private
    // address, or to one error naming why.
    match sockaddr::private_ip() {
        Ok(ip) => {
            let c = build(&flags("{{ GetPrivateIP }}")).unwrap();
            assert_eq!((c.bind_addr, c.advertise_addr), (ip, ip));
            let c = build(&flags("0.0.0.0")).unwrap();
            assert_eq!(c.bind_addr, std::net::IpAddr::from([0, 0, 0, 0]));
            assert_eq!(
                c.advertise_addr, ip,
                "Consul advertises the private address"
            );
        }
        Err(why) => {
            let problems = build(&flags("{{ GetPrivateIP }}")).err().unwrap();
            assert_eq!(problems, vec![format!("bind_addr: {why}")]);
        }
    }
    let problems = build(&flags(r#"{{ GetInterfaceIP "eth0" }}"#))
        .err()
        .unwrap();
    assert!(
        problems[0].starts_with("bind_addr: the go-sockaddr template"),
        "{problems:?}"
    );
}

#[test]
fn rpc_tls_material_is_a_file_or_inline_pem_never_both() {
    let dir = Dir::new("tls-pem");
    dir.write(
        "tls.json",
        r#"{"server": true, "bootstrap_expect": 1, "tls": {"defaults": {"ca_file": "/ca.pem", "ca_pem": "x", "cert_pem": "y", "key_pem": "z"}}}"#,
    );
    let flags = AgentFlags {
        config_dir: vec![dir.0.clone()],
        ..Default::default()
    };
    let problems = build(&flags).err().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p == "tls: ca_file and ca_pem both name the ca: set one"),
        "{problems:?}"
    );
    dir.write(
        "tls.json",
        r#"{"server": true, "bootstrap_expect": 1, "tls": {"defaults": {"ca_pem": "x", "cert_pem": "y"}}}"#,
    );
    let problems = build(&flags).err().unwrap();
    assert!(
        problems.iter().any(|p| p.contains("needs all three")),
        "{problems:?}"
    );
}

#[test]
fn script_checks_from_the_api_need_acls_local_ones_do_not() {
    let flags = |hcl: &str| AgentFlags {
        dev: true,
        hcl: vec![hcl.into()],
        ..Default::default()
    };
    let problems = build(&flags("enable_script_checks = true")).err().unwrap();
    assert!(
        problems[0].starts_with("enable_script_checks lets API callers run programs"),
        "{problems:?}"
    );
    let c = build(&flags("enable_local_script_checks = true")).unwrap();
    assert_eq!(
        c.script_checks,
        weft_agent::ScriptChecks {
            from_api: false,
            from_config: true
        }
    );
    let c = build(&flags(r#"enable_script_checks = true  default_intention_policy = "deny"  acl { enabled = true  default_policy = "deny" }"#)).unwrap();
    assert_eq!(
        c.script_checks,
        weft_agent::ScriptChecks {
            from_api: true,
            from_config: true
        }
    );
}

#[test]
fn the_node_locality_is_read_from_the_config() {
    let flags = AgentFlags {
        dev: true,
        hcl: vec![r#"locality { region = "eu-west-1" zone = "eu-west-1b" }"#.into()],
        ..Default::default()
    };
    let c = build(&flags).unwrap();
    let l = c.locality.unwrap();
    assert_eq!(
        (l.region.as_str(), l.zone.as_str()),
        ("eu-west-1", "eu-west-1b")
    );
    assert!(
        c.ignored.iter().all(|k| !k.starts_with("locality")),
        "{:?}",
        c.ignored
    );
    let bad = AgentFlags {
        dev: true,
        hcl: vec![r#"locality { planet = "mars" }"#.into()],
        ..Default::default()
    };
    assert!(build(&bad).is_err());
}

#[test]
fn check_output_max_size_is_positive_and_bounded() {
    let dir = Dir::new("check-output");
    let flags = flags_with_dir(&dir.0);
    assert_eq!(build(&flags).unwrap().check_output_max_size, 4096);
    dir.write("a.json", r#"{"check_output_max_size": 100}"#);
    assert_eq!(build(&flags).unwrap().check_output_max_size, 100);
    for bad in ["0", "-5", "2000000"] {
        dir.write("a.json", &format!(r#"{{"check_output_max_size": {bad}}}"#));
        let Err(problems) = build(&flags) else {
            panic!("{bad} was accepted");
        };
        assert!(
            problems.iter().any(|p| p.contains("check_output_max_size")),
            "{bad}: {problems:?}"
        );
    }
    // A check's own OutputMaxSize may only lower the agent's.
    assert_eq!(weft_agent::output_max_size(0, 0), 4096);
    assert_eq!(weft_agent::output_max_size(100, 0), 100);
    assert_eq!(weft_agent::output_max_size(100, 50), 50);
    assert_eq!(weft_agent::output_max_size(100, 5000), 100);
}

#[test]
fn wan_federation_is_for_servers_and_off_unless_asked() {
    let dir = Dir::new("wan");
    let data = dir.0.to_string_lossy().to_string();
    let flags = |extra: AgentFlags| AgentFlags {
        data_dir: Some(data.clone()),
        ..extra
    };
    let server = || AgentFlags {
        server: true,
        bootstrap_expect: Some(1),
        ..Default::default()
    };
    // A server that federates with nobody opens no WAN port.
    let c = build(&flags(server())).unwrap();
    assert_eq!(c.wan, None);
    // Asked for: Consul's port 8302 filled in for join addresses.
    let c = build(&flags(AgentFlags {
        retry_join_wan: vec!["10.0.0.9".into()],
        ..server()
    }))
    .unwrap();
    let wan = c.wan.unwrap();
    assert_eq!(wan.join, ["10.0.0.9:8302"]);
    assert_eq!(wan.bind.port(), 8302);
    let c = build(&flags(AgentFlags {
        serf_wan_port: Some(9302),
        ..server()
    }))
    .unwrap();
    assert_eq!(c.wan.unwrap().advertise.port(), 9302);
    // Client agents, dev agents, and a disabled port with join addresses are refused.
    let e = build(&flags(AgentFlags {
        retry_join: vec!["127.0.0.1".into()],
        retry_join_wan: vec!["127.0.0.1".into()],
        ..Default::default()
    }))
    .err()
    .unwrap();
    assert!(
        e.iter()
            .any(|e| e.contains("only servers join the WAN pool")),
        "{e:?}"
    );
    let e = build(&AgentFlags {
        dev: true,
        serf_wan_port: Some(9302),
        ..Default::default()
    })
    .err()
    .unwrap();
    assert!(
        e.iter().any(|e| e.contains("without WAN federation")),
        "{e:?}"
    );
    let e = build(&flags(AgentFlags {
        serf_wan_port: Some(-1),
        retry_join_wan: vec!["127.0.0.1".into()],
        ..server()
    }))
    .err()
    .unwrap();
    assert!(
        e.iter().any(|e| e.contains("ports.serf_wan is -1")),
        "{e:?}"
    );
}
