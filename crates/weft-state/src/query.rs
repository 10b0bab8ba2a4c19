//! Prepared queries in the store: writes that keep names unique (ignoring case, as Consul's name index does),
//! deletion with their session, lookup by ID, name or longest template prefix, and the filtering an execution
//! applies to a service's instances.

use crate::query_template;
use crate::{Store, StoreError, Table};
use std::collections::BTreeSet;
use weft_types::query::{PreparedQuery, ServiceQuery};
use weft_types::views::CheckServiceNode;
use weft_types::CheckStatus;

/// Why an ID or name resolves to no query that can run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryLookupError {
    #[error("Missing Query ID")]
    Missing,
    #[error("Query not found")]
    NotFound,
    #[error("prepared query templates can only be resolved up by name, not by ID")]
    TemplateById,
    /// A stored template that no longer renders for this name.
    #[error("{0}")]
    Render(String),
}

/// How far into the results Consul looks for the `near` node to move it first.
const NEAR_PIN_WINDOW: usize = 10;

/// Moves the first instance on node `near` (any case) to the front when it is among the first ten: Consul's order
/// for a query sorted near a node, applied to results already shuffled.
pub fn pin_near(list: &mut [CheckServiceNode<'_>], near: Option<&str>) {
    let Some(near) = near else { return };
    if let Some(at) = list
        .iter()
        .take(NEAR_PIN_WINDOW)
        .position(|i| i.node.node.eq_ignore_ascii_case(near))
    {
        list.swap(0, at);
    }
}

impl Store {
    pub fn prepared_query(&self, id: &str) -> Option<&PreparedQuery> {
        self.t.queries.get(id)
    }

    /// Every prepared query, by ID.
    pub fn prepared_queries(&self) -> impl Iterator<Item = &PreparedQuery> {
        self.t.queries.values()
    }

    /// The query `text` names, ready to run: by ID (a static query only), then by exact name (case-insensitive),
    /// then by the longest template name that prefixes it (the unnamed template matches everything), rendered for
    /// `text`.
    pub fn resolve_prepared_query(&self, text: &str) -> Result<PreparedQuery, QueryLookupError> {
        if text.is_empty() {
            return Err(QueryLookupError::Missing);
        }
        if weft_types::ids::is_uuid(text) {
            if let Some(q) = self.t.queries.get(&text.to_ascii_lowercase()) {
                return if q.is_template() {
                    Err(QueryLookupError::TemplateById)
                } else {
                    Ok(q.clone())
                };
            }
        }
        let lower = text.to_lowercase();
        let exact = self
            .t
            .queries
            .values()
            .find(|q| !q.name.is_empty() && q.name.to_lowercase() == lower);
        let found = exact.or_else(|| {
            self.t
                .queries
                .values()
                .filter(|q| q.is_template() && lower.starts_with(&q.name.to_lowercase()))
                .max_by_key(|q| q.name.len())
        });
        match found {
            None => Err(QueryLookupError::NotFound),
            Some(q) if q.is_template() => {
                query_template::render(q, self.query_regexes.get(&q.id), text)
                    .map_err(QueryLookupError::Render)
            }
            Some(q) => Ok(q.clone()),
        }
    }

    /// The instances an execution of `s` returns before ACL filtering, shuffling and sorting: the service's (or,
    /// with `connect`, its proxies' and native instances'), without a critical check (nor, with `OnlyPassing`, a
    /// warning one) among those not ignored, carrying the node and service meta asked for, and every tag asked
    /// for and none of the `!tag`s (case-insensitive).
    pub fn prepared_query_instances(
        &self,
        s: &ServiceQuery,
        connect: bool,
    ) -> Vec<CheckServiceNode<'_>> {
        let (wanted, unwanted): (Vec<String>, Vec<String>) = {
            let (no, yes): (Vec<String>, Vec<String>) = s
                .tags
                .iter()
                .map(|t| t.to_lowercase())
                .partition(|t| t.starts_with('!'));
            (yes, no.into_iter().map(|t| t[1..].to_string()).collect())
        };
        self.check_service_nodes(&s.service, connect || s.connect)
            .into_iter()
            .filter(|i| {
                i.checks
                    .iter()
                    .filter(|c| !s.ignore_check_ids.contains(&c.check_id))
                    .all(|c| match c.status {
                        CheckStatus::Passing => true,
                        CheckStatus::Warning => !s.only_passing,
                        CheckStatus::Critical => false,
                    })
            })
            .filter(|i| {
                s.node_meta
                    .iter()
                    .all(|(k, v)| i.node.meta.get(k) == Some(v))
            })
            .filter(|i| {
                s.service_meta
                    .iter()
                    .all(|(k, v)| i.service.meta.get(k) == Some(v))
            })
            .filter(|i| {
                let have: Vec<String> = i.service.tags.iter().map(|t| t.to_lowercase()).collect();
                wanted.iter().all(|t| have.contains(t))
                    && !unwanted.iter().any(|t| have.contains(t))
            })
            .collect()
    }

    /// Creates (`create`) or replaces a prepared query. The caller has validated the definition; the store
    /// decides what depends on other queries and sessions, so two racing writes cannot both take one name.
    pub(crate) fn prepared_query_set(
        &mut self,
        index: u64,
        query: &PreparedQuery,
        create: bool,
        touched: &mut BTreeSet<Table>,
    ) -> Result<(), StoreError> {
        let existing = self.t.queries.get(&query.id);
        if create && existing.is_some() {
            return Err(StoreError::TxnFailed(format!(
                "prepared query ID '{}' is already in use",
                query.id
            )));
        }
        if !create && existing.is_none() {
            return Err(StoreError::QueryNotFound(query.id.clone()));
        }
        let create_index = existing.map_or(index, |q| q.create_index);
        let lower = query.name.to_lowercase();
        for other in self.t.queries.values().filter(|o| o.id != query.id) {
            if !query.name.is_empty() && other.name.to_lowercase() == lower {
                return Err(StoreError::QueryNameTaken(query.name.clone()));
            }
            if query.name.is_empty()
                && query.is_template()
                && other.name.is_empty()
                && other.is_template()
            {
                return Err(StoreError::QueryCatchAllTaken);
            }
        }
        if !query.name.is_empty()
            && self
                .t
                .queries
                .keys()
                .any(|id| id.eq_ignore_ascii_case(&query.name) && *id != query.id)
        {
            return Err(StoreError::QueryNameIsId(query.name.clone()));
        }
        if !query.session.is_empty() && !self.t.sessions.contains_key(&query.session) {
            return Err(StoreError::InvalidSession(query.session.clone()));
        }
        let regex = query_template::compile(query).map_err(StoreError::QueryTemplate)?;
        let mut stored = query.clone();
        stored.create_index = create_index;
        stored.modify_index = index;
        stored.namespace = None;
        stored.partition = None;
        stored.service.namespace = None;
        stored.service.partition = None;
        match regex {
            Some(re) => self.query_regexes.insert(stored.id.clone(), re),
            None => self.query_regexes.remove(&stored.id),
        };
        self.t.queries.insert(stored.id.clone(), stored);
        touched.insert(Table::Queries);
        Ok(())
    }

    /// After a restore: the templates' regexps, compiled again (a template that no longer compiles answers
    /// without its groups rather than failing the restore).
    pub(crate) fn rebuild_query_regexes(&mut self) {
        self.query_regexes = self
            .t
            .queries
            .values()
            .filter_map(|q| Some((q.id.clone(), query_template::compile(q).ok()??)))
            .collect();
    }

    pub(crate) fn prepared_query_delete(
        &mut self,
        id: &str,
        touched: &mut BTreeSet<Table>,
    ) -> Result<(), StoreError> {
        if self.t.queries.remove(id).is_none() {
            return Err(StoreError::QueryNotFound(id.to_string()));
        }
        self.query_regexes.remove(id);
        touched.insert(Table::Queries);
        Ok(())
    }

    /// A session ended: the queries bound to it go with it.
    pub(crate) fn prepared_queries_drop_session(
        &mut self,
        session: &str,
        touched: &mut BTreeSet<Table>,
    ) {
        let before = self.t.queries.len();
        self.t.queries.retain(|_, q| q.session != session);
        let kept = &self.t.queries;
        self.query_regexes.retain(|id, _| kept.contains_key(id));
        if self.t.queries.len() != before {
            touched.insert(Table::Queries);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{Command, Registration};
    use weft_types::query::{QueryTemplate, TEMPLATE_NAME_PREFIX_MATCH};
    use weft_types::{HealthCheck, Node, NodeService};

    const ID1: &str = "11111111-2222-3333-4444-555555555555";
    const ID2: &str = "21111111-2222-3333-4444-555555555555";
    const ID3: &str = "31111111-2222-3333-4444-555555555555";

    fn query(id: &str, name: &str, service: &str, template: bool) -> PreparedQuery {
        PreparedQuery {
            id: id.into(),
            name: name.into(),
            template: QueryTemplate {
                kind: if template {
                    TEMPLATE_NAME_PREFIX_MATCH.into()
                } else {
                    String::new()
                },
                ..QueryTemplate::default()
            },
            service: ServiceQuery {
                service: service.into(),
                ..ServiceQuery::default()
            },
            ..PreparedQuery::default()
        }
    }

    fn set(store: &mut Store, q: PreparedQuery, create: bool) -> Result<(), StoreError> {
        let index = store.last_index() + 1;
        store
            .apply(
                index,
                0,
                &Command::QuerySet {
                    query: Box::new(q),
                    create,
                },
            )
            .map(|_| ())
    }

    /// Registers node `node` with one `web` instance `id` and a check of `status` on it.
    pub(crate) fn instance(
        store: &mut Store,
        node: &str,
        id: &str,
        tags: &[&str],
        status: CheckStatus,
    ) {
        let reg = Registration {
            node: Node {
                node: node.into(),
                address: "10.0.0.1".into(),
                ..Node::default()
            },
            service: Some(NodeService {
                id: id.into(),
                service: "web".into(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                ..NodeService::default()
            }),
            checks: vec![HealthCheck {
                node: node.into(),
                check_id: format!("{id}-check"),
                name: "c".into(),
                status,
                service_id: id.into(),
                service_name: "web".into(),
                ..HealthCheck::default()
            }],
            ..Registration::default()
        };
        let index = store.last_index() + 1;
        store
            .apply(index, 0, &Command::Register(Box::new(reg)))
            .unwrap();
    }

    #[test]
    fn names_are_unique_ignoring_case_and_lookups_follow_consuls_order() {
        let mut s = Store::new();
        set(&mut s, query(ID1, "Web", "web", false), true).unwrap();
        assert_eq!(
            set(&mut s, query(ID2, "web", "other", false), true),
            Err(StoreError::QueryNameTaken("web".into()))
        );
        set(&mut s, query(ID2, "", "${name.suffix}", true), true).unwrap();
        assert_eq!(
            set(&mut s, query(ID3, "", "x", true), true),
            Err(StoreError::QueryCatchAllTaken)
        );
        set(&mut s, query(ID3, "geo-", "geo-${name.suffix}", true), true).unwrap();
        // By ID; by name in any case; by the longest template prefix; the catch-all for the rest.
        assert_eq!(
            s.resolve_prepared_query(ID1).unwrap().service.service,
            "web"
        );
        assert_eq!(s.resolve_prepared_query("WEB").unwrap().id, ID1);
        assert_eq!(
            s.resolve_prepared_query("geo-db").unwrap().service.service,
            "geo-db"
        );
        assert_eq!(
            s.resolve_prepared_query("mysql").unwrap().service.service,
            "mysql"
        );
        assert_eq!(
            s.resolve_prepared_query(ID2),
            Err(QueryLookupError::TemplateById)
        );
        assert_eq!(s.resolve_prepared_query(""), Err(QueryLookupError::Missing));
        // A name may not be another query's ID.
        assert_eq!(
            set(&mut s, query(ID2, ID1, "x", true), false),
            Err(StoreError::QueryNameIsId(ID1.into()))
        );
        // Updates keep the create index; unknown IDs are refused; deletes go.
        let created = s.prepared_query(ID1).unwrap().create_index;
        set(&mut s, query(ID1, "web", "web2", false), false).unwrap();
        let q = s.prepared_query(ID1).unwrap();
        assert_eq!(
            (q.create_index, q.service.service.as_str()),
            (created, "web2")
        );
        assert!(q.modify_index > created);
        let unknown = "41111111-2222-3333-4444-555555555555";
        assert_eq!(
            set(&mut s, query(unknown, "z", "z", false), false),
            Err(StoreError::QueryNotFound(unknown.into()))
        );
        let index = s.last_index() + 1;
        s.apply(index, 0, &Command::QueryDelete { id: ID1.into() })
            .unwrap();
        assert_eq!(s.resolve_prepared_query("web").unwrap().id, ID2);
    }

    #[test]
    fn a_query_needs_its_session_and_goes_with_it() {
        let mut s = Store::new();
        let mut q = query(ID1, "", "web", false);
        q.session = "9e0b0f6a-0000-4000-8000-000000000000".into();
        assert!(matches!(
            set(&mut s, q.clone(), true),
            Err(StoreError::InvalidSession(_))
        ));
        instance(&mut s, "n1", "web1", &[], CheckStatus::Passing);
        let session = weft_types::Session {
            id: q.session.clone(),
            node: "n1".into(),
            ..weft_types::Session::default()
        };
        let index = s.last_index() + 1;
        s.apply(index, 0, &Command::SessionCreate(session)).unwrap();
        set(&mut s, q.clone(), true).unwrap();
        let watch = s.table_index(Table::Queries);
        let index = s.last_index() + 1;
        s.apply(
            index,
            0,
            &Command::SessionDestroy {
                id: q.session.clone(),
            },
        )
        .unwrap();
        assert!(s.prepared_query(ID1).is_none());
        assert!(s.table_index(Table::Queries) > watch);
    }

    #[test]
    fn executions_filter_health_tags_and_meta() {
        let mut s = Store::new();
        instance(
            &mut s,
            "n1",
            "web1",
            &["Primary", "v1"],
            CheckStatus::Passing,
        );
        instance(
            &mut s,
            "n2",
            "web2",
            &["primary", "canary"],
            CheckStatus::Warning,
        );
        instance(&mut s, "n3", "web3", &["primary"], CheckStatus::Critical);
        let ids = |s: &Store, q: &ServiceQuery| -> Vec<String> {
            let mut v: Vec<String> = s
                .prepared_query_instances(q, false)
                .iter()
                .map(|i| i.service.id.clone())
                .collect();
            v.sort();
            v
        };
        let mut q = ServiceQuery {
            service: "web".into(),
            ..ServiceQuery::default()
        };
        assert_eq!(ids(&s, &q), ["web1", "web2"]);
        q.only_passing = true;
        assert_eq!(ids(&s, &q), ["web1"]);
        q.only_passing = false;
        q.ignore_check_ids = vec!["web3-check".into()];
        assert_eq!(ids(&s, &q), ["web1", "web2", "web3"]);
        q.tags = vec!["PRIMARY".into(), "!canary".into()];
        assert_eq!(ids(&s, &q), ["web1", "web3"]);
        q.node_meta.insert("rack".into(), "a".into());
        assert!(ids(&s, &q).is_empty());
    }
}
