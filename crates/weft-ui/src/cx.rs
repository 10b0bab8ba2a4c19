//! The request context every page starts from: which datacenter the URL names (only the agent's own is served), who
//! leads the cluster, and the page chrome (title, navigation, asset URLs) the layout template draws.

use crate::assets;
use crate::links;
use crate::pages::errors::{self, Refused};
use crate::viewer::Viewer;
use axum::http::StatusCode;
use weft_acl::{Named, Need, Whole};
use weft_http::ApiState;

/// The dashboard's top-level sections, for the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Services,
    Nodes,
    Kv,
    Intentions,
    Acls,
}

/// One link of the navigation bar.
pub struct NavItem {
    pub label: &'static str,
    pub href: String,
    pub current: bool,
}

/// What the layout template needs on every page.
pub struct Chrome {
    pub title: String,
    pub dc: String,
    pub nav: Vec<NavItem>,
    /// The Raft leader's address, empty when there is none.
    pub leader: String,
    pub css: String,
    pub js: String,
    pub version: &'static str,
    /// ACLs are on: the header shows "Sign in" or "Sign out".
    pub acl: bool,
    pub signed_in: bool,
    pub login_href: String,
}

impl Chrome {
    pub fn has_leader(&self) -> bool {
        !self.leader.is_empty()
    }

    pub fn home(&self) -> String {
        links::dc_path(&self.dc, "services")
    }
}

/// A request for a page of one datacenter.
#[derive(Clone)]
pub struct Cx {
    pub state: ApiState,
    pub dc: String,
    pub viewer: Viewer,
}

impl Cx {
    /// The context for `dc`, or the "unknown datacenter" page: this agent serves its own datacenter only.
    pub fn new(state: ApiState, dc: String, viewer: Viewer) -> Result<Cx, Refused> {
        let own = state.agent.config().datacenter.clone();
        if dc != own {
            return Err(errors::unknown_dc(&state, &dc, &own).into());
        }
        Ok(Cx { state, dc, viewer })
    }

    /// A page about `name` needs `kind:read` on it: otherwise the API's 403 text, on a page.
    pub fn require(&self, kind: Named, name: &str, need: Need) -> Result<(), Refused> {
        if self.viewer.may(kind, name, need) {
            return Ok(());
        }
        let text = self.viewer.denied(kind.as_str(), need, Some(name));
        Err(self.forbidden(text))
    }

    pub fn require_whole(&self, kind: Whole, need: Need) -> Result<(), Refused> {
        if self.viewer.may_whole(kind, need) {
            return Ok(());
        }
        let text = self.viewer.denied(kind.as_str(), need, None);
        Err(self.forbidden(text))
    }

    fn forbidden(&self, text: String) -> Refused {
        let back = crate::links::Link {
            label: if self.viewer.signed_in {
                "Sign in with another token".into()
            } else {
                "Sign in".into()
            },
            href: crate::links::dc_path(&self.dc, "login"),
        };
        errors::page(
            &self.state,
            &self.dc,
            StatusCode::FORBIDDEN,
            "Permission denied",
            text,
            back,
            self.viewer.signed_in,
        )
        .into()
    }

    /// Whether a list shows `name` (lists leave out what the viewer may not read, as the API's do).
    pub fn sees(&self, kind: Named, name: &str) -> bool {
        self.viewer.may(kind, name, Need::Read)
    }

    /// The Raft leader's address (`host:port`), empty when the cluster has none.
    pub fn leader(&self) -> String {
        self.state.agent.server().leader().unwrap_or_default()
    }

    /// The node whose agent leads the cluster: this node when the leader is this server, else a node whose address
    /// is the leader's host (Consul's UI compares addresses).
    pub fn is_leader_node(&self, node: &weft_types::Node) -> bool {
        let leader = self.leader();
        if leader.is_empty() {
            return false;
        }
        let server = self.state.agent.server();
        if leader == server.config().rpc_addr {
            return node.node == self.state.agent.config().node_name;
        }
        node.address == weft_types::addr::host_of(&leader)
    }

    pub fn chrome(&self, title: impl Into<String>, section: Option<Section>) -> Chrome {
        chrome_for(
            &self.state,
            &self.dc,
            title.into(),
            section,
            self.viewer.signed_in,
        )
    }
}

/// The chrome for a datacenter (also used for error pages, which may not have a valid [`Cx`]).
pub fn chrome_for(
    state: &ApiState,
    dc: &str,
    title: String,
    section: Option<Section>,
    signed_in: bool,
) -> Chrome {
    let acl = state.agent.server().acl_enabled();
    let item = |label, s: Section, path: &str| NavItem {
        label,
        href: links::dc_path(dc, path),
        current: section == Some(s),
    };
    Chrome {
        title,
        dc: dc.to_string(),
        nav: {
            let mut nav = vec![
                item("Services", Section::Services, "services"),
                item("Nodes", Section::Nodes, "nodes"),
                item("Key/Value", Section::Kv, "kv/"),
                item("Intentions", Section::Intentions, "intentions"),
            ];
            if acl {
                nav.push(item("Access", Section::Acls, "acls/tokens"));
            }
            nav
        },
        leader: state.agent.server().leader().unwrap_or_default(),
        css: assets::url("app.css"),
        js: assets::url("app.js"),
        version: weft_types::VERSION,
        acl,
        signed_in,
        login_href: links::dc_path(dc, "login"),
    }
}
