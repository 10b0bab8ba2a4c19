//! The DNS interface against real agents, asked with Debian's `dig` (as users do) and, for hostile input, with raw
//! packets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{ensure, Context, Result};
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use weft_testkit::process::rss_kb;
use weft_testkit::{eventually, eventually_sync, Cluster, DevAgent};

use weft_testkit::dig::{dig, short};

/// The `status:` of a full dig answer (NOERROR, NXDOMAIN, ...).
fn status(answer: &str) -> &str {
    answer
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("")
}

fn dns(agent: &DevAgent) -> Result<SocketAddr> {
    agent.dns_addr().context("the agent printed no DNS address")
}

/// Registers `service` on an external node `node` at `addr` with one check of `status`.
async fn external(
    agent: &DevAgent,
    node: &str,
    addr: &str,
    service: serde_json::Value,
    status: &str,
) -> Result<()> {
    let id = service["ID"].as_str().unwrap_or_default().to_string();
    let body = json!({
        "Node": node, "Address": addr, "NodeMeta": {"rack": "r1"},
        "Service": service,
        "Check": {"CheckID": format!("check-{id}"), "Name": "check", "ServiceID": id, "Status": status},
    });
    agent
        .put_json("/v1/catalog/register", &body)
        .await?
        .expect_status(200)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_nodes_and_addresses_answer_as_consul_does() -> Result<()> {
    let agent = DevAgent::builder()
        .args([
            "-hcl",
            r#"dns_config { service_ttl { "*" = "42s" } node_ttl = "7s" }"#,
        ])
        .start()?;
    let at = dns(&agent)?;
    for (node, addr, id, tags, port, status) in [
        ("n1", "10.0.0.1", "web-1", vec!["v1"], 8080, "passing"),
        ("n2", "10.0.0.2", "web-2", vec!["v2"], 8081, "warning"),
        ("n3", "10.0.0.3", "web-3", vec!["v1"], 8082, "critical"),
    ] {
        let svc = json!({"ID": id, "Service": "web", "Tags": tags, "Port": port});
        external(&agent, node, addr, svc, status).await?;
    }
    ensure!(short(at, &["web.service.consul"])? == ["10.0.0.1", "10.0.0.2"]);
    ensure!(short(at, &["WEB.service.DC1.consul"])? == ["10.0.0.1", "10.0.0.2"]);
    ensure!(short(at, &["v1.web.service.consul"])? == ["10.0.0.1"]);
    let srv = short(at, &["_web._tcp.service.consul", "SRV"])?;
    ensure!(
        srv == [
            "1 1 8080 n1.node.dc1.consul.",
            "1 1 8081 n2.node.dc1.consul."
        ],
        "{srv:?}"
    );
    // SRV targets' addresses come along; TTLs are the configured ones.
    let full = dig(at, &["web.service.consul", "SRV"])?;
    ensure!(full.contains("ADDITIONAL SECTION"), "{full}");
    ensure!(
        full.lines()
            .any(|l| l.starts_with("n1.node.dc1.consul.") && l.contains("10.0.0.1")),
        "{full}"
    );
    ensure!(
        full.lines()
            .any(|l| l.starts_with("web.service.consul.") && l.contains("\t42\t")),
        "service TTL: {full}"
    );
    let node = dig(at, &["n1.node.consul"])?;
    ensure!(
        node.lines().any(|l| l.starts_with("n1.node.consul.")
            && l.contains("\t7\t")
            && l.ends_with("10.0.0.1")),
        "node TTL and address: {node}"
    );
    ensure!(short(at, &["n1.node.consul", "TXT"])? == ["\"rack=r1\""]);
    ensure!(short(at, &["0a000002.addr.dc1.consul"])? == ["10.0.0.2"]);
    ensure!(short(at, &["-x", "10.0.0.1"])? == ["n1.node.dc1.consul."]);
    // Unknown names: NXDOMAIN with the SOA; a known name without that type: NOERROR and nothing.
    let none = dig(at, &["nope.service.consul"])?;
    ensure!(status(&none) == "NXDOMAIN", "{none}");
    ensure!(
        none.contains("AUTHORITY SECTION") && none.contains("SOA"),
        "{none}"
    );
    let other_dc = dig(at, &["web.service.dc9.consul"])?;
    ensure!(status(&other_dc) == "NXDOMAIN", "{other_dc}");
    let mx = dig(at, &["web.service.consul", "MX"])?;
    ensure!(status(&mx) == "NOERROR" && mx.contains("ANSWER: 0"), "{mx}");
    // No recursors: names outside the domain are refused.
    let outside = dig(at, &["example.com"])?;
    ensure!(status(&outside) == "REFUSED", "{outside}");
    // A health change shows in the next answer.
    external(
        &agent,
        "n1",
        "10.0.0.1",
        json!({"ID": "web-1", "Service": "web", "Tags": ["v1"], "Port": 8080}),
        "critical",
    )
    .await?;
    ensure!(short(at, &["web.service.consul"])? == ["10.0.0.2"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_ingress_names_lead_to_proxies_and_gateways() -> Result<()> {
    let agent = DevAgent::start()?;
    let at = dns(&agent)?;
    for svc in [
        json!({"Name": "api", "Port": 9000, "Address": "127.0.0.1"}),
        json!({"Kind": "connect-proxy", "Name": "api-sidecar-proxy", "Port": 21000, "Address": "127.0.0.1",
               "Proxy": {"DestinationServiceName": "api"}}),
    ] {
        agent
            .put_json("/v1/agent/service/register", &svc)
            .await?
            .expect_status(200)?;
    }
    let srv = short(at, &["api.connect.consul", "SRV"])?;
    ensure!(
        srv.len() == 1 && srv[0].contains(" 21000 "),
        "the sidecar's port: {srv:?}"
    );
    // The plain name answers the service itself.
    let srv = short(at, &["api.service.consul", "SRV"])?;
    ensure!(srv.len() == 1 && srv[0].contains(" 9000 "), "{srv:?}");
    agent
        .put_json(
            "/v1/agent/service/register",
            &json!({"Kind": "ingress-gateway", "Name": "edge", "Port": 8443, "Address": "127.0.0.9",
                    "Proxy": {"Upstreams": [{"DestinationName": "api", "LocalBindPort": 8443}]}}),
        )
        .await?
        .expect_status(200)?;
    ensure!(short(at, &["api.ingress.consul"])? == ["127.0.0.9"]);
    let none = dig(at, &["other.ingress.consul"])?;
    ensure!(status(&none) == "NXDOMAIN", "{none}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_answers_are_truncated_over_udp_and_whole_over_tcp() -> Result<()> {
    let agent = DevAgent::start()?;
    let at = dns(&agent)?;
    for i in 0..40 {
        let svc = json!({"ID": format!("big-{i}"), "Service": "big", "Port": 80});
        let node = format!("a-node-with-a-long-name-for-truncation-{i}");
        external(&agent, &node, &format!("10.9.0.{}", i + 1), svc, "passing").await?;
    }
    // Without EDNS: udp_answer_limit (3) answers.
    let a = short(at, &["big.service.consul", "+noedns"])?;
    ensure!(a.len() == 3, "{a:?}");
    // SRV with a 512-byte buffer does not fit: TC set (dig reports it and, with +ignore, does not retry).
    let udp = dig(
        at,
        &["big.service.consul", "SRV", "+bufsize=512", "+ignore"],
    )?;
    ensure!(udp.contains(" tc"), "no TC flag: {udp}");
    let tcp = short(at, &["big.service.consul", "SRV", "+tcp"])?;
    ensure!(tcp.len() == 40, "{} over TCP", tcp.len());
    // dig on its own retries a truncated answer over TCP and gets them all.
    let retried = short(at, &["big.service.consul", "SRV", "+bufsize=512"])?;
    ensure!(retried.len() == 40, "{} after the TCP retry", retried.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_outside_the_domain_go_to_the_recursors() -> Result<()> {
    // Another agent serves the zone `upstream.` and stands in for the recursor.
    let upstream = DevAgent::builder().args(["-domain", "upstream"]).start()?;
    let recursor = dns(&upstream)?;
    external(
        &upstream,
        "far",
        "10.7.7.7",
        json!({"ID": "far-web", "Service": "far-web", "Port": 80}),
        "passing",
    )
    .await?;
    let agent = DevAgent::builder()
        .args(["-recursor", &recursor.to_string()])
        .start()?;
    let at = dns(&agent)?;
    ensure!(short(at, &["far-web.service.upstream"])? == ["10.7.7.7"]);
    let full = dig(at, &["far-web.service.upstream"])?;
    ensure!(full.contains(" ra"), "recursion available: {full}");
    // A recursor that does not answer: SERVFAIL within the recursor timeout.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let dead = DevAgent::builder()
        .args(["-recursor", &silent.local_addr()?.to_string()])
        .args(["-hcl", "dns_config { recursor_timeout = \"300ms\" }"])
        .start()?;
    let answer = dig(dns(&dead)?, &["example.org"])?;
    ensure!(status(&answer) == "SERVFAIL", "{answer}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_agent_answers_from_its_replica() -> Result<()> {
    let cluster = Cluster::start(3, 1).await?;
    let client = cluster.agent(3)?;
    client
        .put_json(
            "/v1/agent/service/register",
            &json!({"Name": "replicated", "Port": 7000, "Address": "10.3.3.3"}),
        )
        .await?
        .expect_status(200)?;
    let at = dns(client)?;
    let found = eventually(Duration::from_secs(10), || async {
        let a = short(at, &["replicated.service.consul"]).ok()?;
        (a == ["10.3.3.3"]).then_some(())
    })
    .await;
    ensure!(found.is_ok(), "the client agent never answered");
    // A server answers the same.
    let server = dns(cluster.agent(0)?)?;
    ensure!(short(server, &["replicated.service.consul"])? == ["10.3.3.3"]);
    Ok(())
}

/// Random and damaged packets, then a flood: the agent answers everyone else throughout and its memory stays flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_packets_and_floods_leave_the_server_answering() -> Result<()> {
    let agent = DevAgent::start()?;
    let at = dns(&agent)?;
    external(
        &agent,
        "n1",
        "10.0.0.1",
        json!({"ID": "web-1", "Service": "web", "Port": 80}),
        "passing",
    )
    .await?;
    ensure!(short(at, &["web.service.consul"])? == ["10.0.0.1"]);
    let before = rss_kb(agent.pid())?;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    // A well-formed query to damage: web.service.consul A.
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["web", "service", "consul"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..20_000u32 {
        let packet: Vec<u8> = match i % 4 {
            0 => (0..(next() % 600)).map(|_| next() as u8).collect(),
            1 => {
                let mut q = query.clone();
                let at = (next() as usize) % q.len();
                q[at] = next() as u8;
                q
            }
            // A compression pointer to itself; a header claiming 65,535 questions.
            2 => {
                let mut q = query[..12].to_vec();
                q.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
                q
            }
            _ => {
                let mut q = query.clone();
                q[4] = 0xff;
                q[5] = 0xff;
                q
            }
        };
        socket.send_to(&packet, at)?;
    }
    // A name of more than 255 bytes.
    let mut long = query[..12].to_vec();
    for _ in 0..5 {
        long.push(63);
        long.extend_from_slice(&[b'a'; 63]);
    }
    long.extend_from_slice(&[0, 0, 1, 0, 1]);
    socket.send_to(&long, at)?;
    // The agent still answers, and its memory did not grow with the flood. The flood may have filled the socket's
    // receive queue, and the kernel drops what arrives until the agent has drained it, so the question is asked
    // again as resolvers do (dig's default is three tries); an agent that stopped answering fails here.
    eventually_sync(Duration::from_secs(10), || {
        short(at, &["web.service.consul"]).map(|got| got == ["10.0.0.1"])
    })?;
    let after = rss_kb(agent.pid())?;
    ensure!(
        after < before + 5 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    ensure!(agent.get("/v1/status/leader").await?.status == 200);
    Ok(())
}

/// The same questions from a Rust client (hickory-proto's messages over a plain UDP socket and TCP stream): EDNS0
/// is echoed, IPv6 addresses come as AAAA, and a truncated UDP answer is whole over TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_client_gets_edns_aaaa_and_whole_answers_over_tcp() -> Result<()> {
    use hickory_proto::op::{Edns, Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let agent = DevAgent::start()?;
    let at = dns(&agent)?;
    external(
        &agent,
        "v6",
        "fd00::10",
        json!({"ID": "six-1", "Service": "six", "Port": 80}),
        "passing",
    )
    .await?;
    for i in 0..30 {
        let svc = json!({"ID": format!("many-{i}"), "Service": "many", "Port": 80});
        let node = format!("a-node-with-a-long-name-for-a-large-answer-{i}");
        external(&agent, &node, &format!("10.8.0.{}", i + 1), svc, "passing").await?;
    }
    let query = |name: &str, qtype: RecordType, payload: Option<u16>| -> Result<Vec<u8>> {
        let mut msg = Message::query();
        msg.add_query(Query::query(Name::from_ascii(name)?, qtype));
        if let Some(size) = payload {
            let mut edns = Edns::new();
            edns.set_max_payload(size);
            msg.set_edns(edns);
        }
        Ok(msg.to_vec()?)
    };
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let mut buf = vec![0u8; 65_535];
    let mut ask_udp = async |bytes: Vec<u8>| -> Result<Message> {
        udp.send_to(&bytes, at).await?;
        let (n, _) =
            tokio::time::timeout(Duration::from_secs(2), udp.recv_from(&mut buf)).await??;
        Ok(Message::from_vec(&buf[..n])?)
    };
    let six = ask_udp(query("six.service.consul.", RecordType::AAAA, Some(1232))?).await?;
    ensure!(six.edns.is_some(), "EDNS0 is answered with EDNS0");
    let v6: Vec<String> = six
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    ensure!(v6 == ["fd00::10"], "{v6:?}");
    let cut = ask_udp(query("many.service.consul.", RecordType::SRV, Some(512))?).await?;
    ensure!(
        cut.metadata.truncation && cut.answers.len() < 30,
        "{}",
        cut.answers.len()
    );
    let mut tcp = tokio::net::TcpStream::connect(at).await?;
    let bytes = query("many.service.consul.", RecordType::SRV, None)?;
    tcp.write_all(&(bytes.len() as u16).to_be_bytes()).await?;
    tcp.write_all(&bytes).await?;
    let mut len = [0u8; 2];
    tcp.read_exact(&mut len).await?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    tcp.read_exact(&mut answer).await?;
    let whole = Message::from_vec(&answer)?;
    ensure!(
        !whole.metadata.truncation && whole.answers.len() == 30,
        "{}",
        whole.answers.len()
    );
    Ok(())
}

/// With ACLs on, DNS names only what the agent's `dns` token (else `default`, else anonymous) may read, as
/// Consul's DNS filters: under default deny, nothing; once a token with `builtin/dns` is set, every healthy
/// service and node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_acls_dns_names_only_what_its_token_may_read() -> Result<()> {
    const ROOT: &str = "3e9d7c5b-1a2f-4c6e-8d0b-9a8f7e6d5c4b";
    let acl = format!(
        r#"acl {{ enabled = true  default_policy = "deny"  tokens {{ initial_management = "{ROOT}" }} }}
           default_intention_policy = "allow""#
    );
    let agent = DevAgent::builder().arg("-hcl").arg(acl).start()?;
    let at = dns(&agent)?;
    agent.wait_for_acls(ROOT).await?;
    agent
        .put_json(
            &format!("/v1/catalog/register?token={ROOT}"),
            &json!({"Node": "ext", "Address": "10.1.2.3", "Service": {"Service": "web", "Port": 80}}),
        )
        .await?
        .expect_status(200)?;
    let hidden = dig(at, &["web.service.consul", "A"])?;
    ensure!(status(&hidden) == "NXDOMAIN", "{hidden}");
    ensure!(status(&dig(at, &["ext.node.consul", "A"])?) == "NXDOMAIN");
    let token = agent
        .put_json(
            &format!("/v1/acl/token?token={ROOT}"),
            &json!({"TemplatedPolicies": [{"TemplateName": "builtin/dns"}]}),
        )
        .await?;
    token.expect_status(200)?;
    let secret = token.json()?["SecretID"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    agent
        .put_json(
            &format!("/v1/agent/token/dns?token={ROOT}"),
            &json!({"Token": secret}),
        )
        .await?
        .expect_status(200)?;
    eventually(Duration::from_secs(10), async || -> Result<bool> {
        Ok(short(at, &["web.service.consul", "A"])? == ["10.1.2.3"])
    })
    .await?;
    ensure!(short(at, &["ext.node.consul", "A"])? == ["10.1.2.3"]);
    Ok(())
}
