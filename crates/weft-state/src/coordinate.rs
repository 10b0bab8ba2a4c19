//! Network coordinates by node: what agents send (every node's own, about every 15 s) and what `?near` sorts by.
//! An update for a node the catalog does not hold is skipped (the node may have been removed meanwhile); a node's
//! coordinate goes with the node.

use crate::{Store, Table};
use std::collections::BTreeSet;
use std::time::Duration;
use weft_types::coordinate::Coordinate;
use weft_types::views::CheckServiceNode;

impl Store {
    pub fn coordinate(&self, node: &str) -> Option<&Coordinate> {
        self.t.coordinates.get(node)
    }

    /// Every node's coordinate, by node name.
    pub fn coordinates(&self) -> impl Iterator<Item = (&String, &Coordinate)> {
        self.t.coordinates.iter()
    }

    pub(crate) fn coordinates_set(
        &mut self,
        updates: &[(String, Coordinate)],
        touched: &mut BTreeSet<Table>,
    ) {
        for (node, coord) in updates {
            let changed = self.t.coordinates.get(node) != Some(coord);
            if changed && coord.is_valid() && self.t.nodes.contains_key(node) {
                self.t.coordinates.insert(node.clone(), coord.clone());
                touched.insert(Table::Coordinates);
            }
        }
    }

    pub(crate) fn coordinate_drop(&mut self, node: &str, touched: &mut BTreeSet<Table>) {
        if self.t.coordinates.remove(node).is_some() {
            touched.insert(Table::Coordinates);
        }
    }

    /// The estimated round trip between two nodes, when both have coordinates.
    pub fn rtt_between(&self, a: &str, b: &str) -> Option<Duration> {
        Some(self.coordinate(a)?.distance_to(self.coordinate(b)?))
    }

    /// Sorts `items` by estimated round trip from node `near` (stable: nodes without a coordinate keep their order
    /// after those with one). Nothing moves when `near` has no coordinate, as in Consul.
    pub fn sort_near<T>(&self, items: &mut [T], near: &str, node_of: impl Fn(&T) -> &str) {
        let Some(from) = self.coordinate(near) else {
            return;
        };
        items.sort_by_cached_key(|item| {
            self.coordinate(node_of(item))
                .map_or(Duration::MAX, |c| from.distance_to(c))
        });
    }

    /// [`Store::sort_near`] for health views.
    pub fn sort_instances_near(&self, items: &mut [CheckServiceNode<'_>], near: &str) {
        self.sort_near(items, near, |i| i.node.node.as_str());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::query::tests::instance;
    use crate::{Command, Store, Table};
    use weft_types::coordinate::Coordinate;
    use weft_types::CheckStatus;

    fn at(x: f64) -> Coordinate {
        let mut c = Coordinate::default();
        c.vec[0] = x;
        c
    }

    #[test]
    fn coordinates_sort_nodes_and_go_with_their_node() {
        let mut s = Store::new();
        for n in ["a", "b", "c", "d"] {
            instance(&mut s, n, &format!("web-{n}"), &[], CheckStatus::Passing);
        }
        let mut bad = at(0.0);
        bad.vec.pop();
        let updates = vec![
            ("a".to_string(), at(0.0)),
            ("b".to_string(), at(0.050)),
            ("c".to_string(), at(0.010)),
            ("ghost".to_string(), at(0.0)),
            ("d".to_string(), bad),
        ];
        let index = s.last_index() + 1;
        s.apply(index, 0, &Command::CoordinatesSet(updates))
            .unwrap();
        assert_eq!(
            s.coordinates().count(),
            3,
            "unknown nodes and bad coordinates are skipped"
        );
        assert!(s.table_index(Table::Coordinates) > 0);
        let rtt = s.rtt_between("a", "b").unwrap().as_secs_f64();
        assert!((rtt - 0.05).abs() < 0.001, "{rtt}");
        let mut names = vec!["d", "b", "a", "c"];
        s.sort_near(&mut names, "a", |n| n);
        assert_eq!(names, ["a", "c", "b", "d"]);
        // A near node without a coordinate changes nothing.
        let mut names = vec!["b", "a"];
        s.sort_near(&mut names, "d", |n| n);
        assert_eq!(names, ["b", "a"]);
        let index = s.last_index() + 1;
        s.apply(
            index,
            0,
            &Command::Deregister {
                node: "b".into(),
                service_id: None,
                check_id: None,
            },
        )
        .unwrap();
        assert!(s.coordinate("b").is_none());
    }
}
