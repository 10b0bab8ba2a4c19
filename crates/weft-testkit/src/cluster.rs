//! [`Cluster`]: real `weft agent -server` and client processes on 127.0.0.1, each with its own data dir and a free
//! RPC port, joined with `-retry-join`. Members can be killed (SIGKILL, any moment) and restarted on the same data
//! dir and ports; everything is killed and removed on drop.

use crate::agent::{unique_node_name, DevAgent};
use crate::eventually::eventually;
use crate::net::free_port;
use crate::tempdir::TempDir;
use anyhow::{anyhow, bail, Context, Result};
use std::time::Duration;

/// One member's fixed identity: what a restart reuses.
struct Member {
    node: String,
    server: bool,
    rpc_port: u16,
    serf_port: u16,
    agent: Option<DevAgent>,
}

pub struct Cluster {
    dir: TempDir,
    members: Vec<Member>,
    join: Vec<String>,
    expect: usize,
    /// Extra arguments every member gets (config files, flags).
    extra: Vec<String>,
}

impl Cluster {
    /// Starts `servers` servers (all with `-bootstrap-expect servers`) and `clients` client agents, and waits until
    /// every member knows the leader.
    pub async fn start(servers: usize, clients: usize) -> Result<Cluster> {
        Cluster::start_with(servers, clients, Vec::new()).await
    }

    /// Like [`Cluster::start`], with `extra` arguments for every member.
    pub async fn start_with(servers: usize, clients: usize, extra: Vec<String>) -> Result<Cluster> {
        let mut cluster = Cluster {
            dir: TempDir::new()?,
            members: Vec::new(),
            join: Vec::new(),
            expect: servers,
            extra,
        };
        for _ in 0..servers {
            let serf_port = crate::net::free_gossip_port()?;
            cluster.join.push(format!("127.0.0.1:{serf_port}"));
            cluster.members.push(Member {
                node: unique_node_name(),
                server: true,
                rpc_port: free_port()?,
                serf_port,
                agent: None,
            });
        }
        for _ in 0..clients {
            cluster.members.push(Member {
                node: unique_node_name(),
                server: false,
                rpc_port: free_port()?,
                serf_port: crate::net::free_gossip_port()?,
                agent: None,
            });
        }
        for i in 0..cluster.members.len() {
            cluster.launch(i)?;
        }
        cluster.wait_for_leader().await?;
        cluster.wait_for_catalog().await?;
        Ok(cluster)
    }

    /// Waits (up to 20 s) until every running member has registered its node in the catalog (anti-entropy does it
    /// once a leader answers).
    pub async fn wait_for_catalog(&self) -> Result<()> {
        let leader = self.leader().await?;
        eventually(Duration::from_secs(20), || async {
            let nodes = self.agent(leader)?.get("/v1/catalog/nodes").await?.json()?;
            let names: Vec<&str> = nodes
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n["Node"].as_str())
                .collect();
            let missing: Vec<&str> = self
                .running()
                .into_iter()
                .map(|i| self.node(i))
                .filter(|n| !names.contains(n))
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                bail!("not yet in the catalog: {missing:?}")
            }
        })
        .await
        .context("members did not register in the catalog")
    }

    fn launch(&mut self, i: usize) -> Result<()> {
        let m = &self.members[i];
        let data = self.dir.path().join(&m.node);
        let mut b = DevAgent::builder()
            .clustered()
            .node(m.node.clone())
            .args(["-bind", "127.0.0.1", "-server-port"])
            .arg(m.rpc_port.to_string())
            .arg("-serf-lan-port")
            .arg(m.serf_port.to_string())
            .arg("-data-dir")
            .arg(data.as_os_str());
        if m.server {
            b = b
                .arg("-server")
                .args(["-bootstrap-expect", &self.expect.to_string()]);
        }
        for j in &self.join {
            b = b.args(["-retry-join", j]);
        }
        b = b.args(self.extra.iter());
        let agent = b.start()?;
        self.members[i].agent = Some(agent);
        Ok(())
    }

    /// The cluster's temporary directory (for config files).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Starts one more server that joins the running cluster; answers its index.
    pub fn add_server(&mut self) -> Result<usize> {
        self.members.push(Member {
            node: unique_node_name(),
            server: true,
            rpc_port: free_port()?,
            serf_port: crate::net::free_gossip_port()?,
            agent: None,
        });
        let i = self.members.len() - 1;
        self.launch(i)?;
        Ok(i)
    }

    /// Starts one more client agent with its own extra arguments (instead of the cluster's); answers its index.
    pub fn add_client_with(&mut self, extra: Vec<String>) -> Result<usize> {
        self.members.push(Member {
            node: unique_node_name(),
            server: false,
            rpc_port: free_port()?,
            serf_port: crate::net::free_gossip_port()?,
            agent: None,
        });
        let i = self.members.len() - 1;
        let saved = std::mem::replace(&mut self.extra, extra);
        let launched = self.launch(i);
        self.extra = saved;
        launched?;
        Ok(i)
    }

    /// Member `i`'s RPC address (`127.0.0.1:port`).
    pub fn rpc_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].rpc_port)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `i` (servers first, then clients); fails if it is stopped.
    pub fn agent(&self, i: usize) -> Result<&DevAgent> {
        self.members
            .get(i)
            .and_then(|m| m.agent.as_ref())
            .ok_or_else(|| anyhow!("member {i} is not running"))
    }

    pub fn is_server(&self, i: usize) -> bool {
        self.members.get(i).is_some_and(|m| m.server)
    }

    pub fn node(&self, i: usize) -> &str {
        self.members.get(i).map(|m| m.node.as_str()).unwrap_or("")
    }

    /// The running members' indexes.
    pub fn running(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|i| self.members[*i].agent.is_some())
            .collect()
    }

    /// SIGKILLs member `i` (no chance to flush or leave).
    pub fn kill(&mut self, i: usize) {
        self.members[i].agent = None;
    }

    /// Starts member `i` again on the same data dir, node name and ports.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        if self.members[i].agent.is_some() {
            bail!("member {i} is running");
        }
        self.launch(i)
    }

    /// The index of the server that is leader, by its RPC address.
    pub async fn leader(&self) -> Result<usize> {
        for i in self.running() {
            let resp = self.agent(i)?.get("/v1/status/leader").await?;
            let addr: String = serde_json::from_slice(&resp.body).unwrap_or_default();
            if let Some(idx) = self
                .members
                .iter()
                .position(|m| m.server && format!("127.0.0.1:{}", m.rpc_port) == addr)
            {
                if self.members[idx].agent.is_some() {
                    return Ok(idx);
                }
            }
        }
        bail!("no running member names a running leader")
    }

    /// Waits (up to 20 s) until every running member names the same, running leader.
    pub async fn wait_for_leader(&self) -> Result<usize> {
        eventually(Duration::from_secs(20), || async {
            let leader = self.leader().await?;
            let want = format!("127.0.0.1:{}", self.members[leader].rpc_port);
            for i in self.running() {
                let resp = self.agent(i)?.get("/v1/status/leader").await?;
                let addr: String = serde_json::from_slice(&resp.body).unwrap_or_default();
                if addr != want {
                    bail!("{} names {addr:?} as leader, not {want}", self.node(i));
                }
            }
            Ok(Some(leader))
        })
        .await
        .context("the cluster did not agree on a leader")
    }
}
