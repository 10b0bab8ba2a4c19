//! The CA end to end, without I/O: roots, leaves, refusals and rotation.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::leaf::{inspect, new_request, sign, SigningContext};
use std::time::Duration;
use x509_parser::prelude::{FromDer, X509Certificate};

const CLUSTER: &str = "11111111-2222-3333-4444-555555555555";
const NOW: u64 = 1_800_000_000;

fn ctx<'a>(root: &'a StoredRoot, td: &'a str) -> SigningContext<'a> {
    SigningContext {
        root,
        trust_domain: td,
        datacenter: "dc1",
        serial: 7,
        now_unix: NOW,
        ttl: Duration::from_secs(3600),
    }
}

fn with_cert<R>(pem: &str, f: impl FnOnce(&X509Certificate<'_>) -> R) -> R {
    let der = pem_to_der(pem).unwrap();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    f(&cert)
}

#[test]
fn root_has_consul_shape() {
    let root = root::generate_root(&CaConfig::default(), CLUSTER, 1, NOW).unwrap();
    let r = &root.root;
    assert_eq!(
        r.id.len(),
        20 * 3 - 1,
        "SHA-1 fingerprint as colon hex: {}",
        r.id
    );
    assert_eq!(r.external_trust_domain, CLUSTER);
    assert!(r.active);
    assert_eq!(r.private_key_type, "ec");
    with_cert(&r.root_cert, |c| {
        assert!(c.is_ca());
        let years = (c.validity().not_after.timestamp() - c.validity().not_before.timestamp())
            / (365 * 86400);
        assert_eq!(years, 10);
    });
}

#[test]
fn leaf_for_a_service() {
    let root = root::generate_root(&CaConfig::default(), CLUSTER, 1, NOW).unwrap();
    let td = spiffe::trust_domain(CLUSTER);
    let id = ServiceId::new(&td, "dc1", "web");
    let (_key, csr) = new_request(&id).unwrap();
    let (issued, who) = sign(&csr, &ctx(&root, &td)).unwrap();
    assert_eq!(who.service, "web");
    assert_eq!(
        issued.service_uri,
        format!("spiffe://{td}/ns/default/dc/dc1/svc/web")
    );
    assert_eq!(issued.serial_number, "07");
    let info = inspect(&issued.cert_pem).unwrap();
    assert_eq!(info.uris, vec![issued.service_uri.clone()]);
    assert_eq!(info.authority_key_id, root.root.signing_key_id);
    assert_eq!(info.not_after_unix - info.not_before_unix, 3600);
    assert_eq!(info.not_before_unix, (NOW - 60) as i64);
    with_cert(&issued.cert_pem, |c| {
        assert!(!c.is_ca());
        let eku = c.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        assert!(
            c.subject().iter().next().is_none(),
            "leaves have an empty subject"
        );
    });
}

#[test]
fn refuses_foreign_csrs() {
    let root = root::generate_root(&CaConfig::default(), CLUSTER, 1, NOW).unwrap();
    let td = spiffe::trust_domain(CLUSTER);
    let other_td = ServiceId::new("99999999-0000-0000-0000-000000000000.consul", "dc1", "web");
    let other_dc = ServiceId::new(&td, "dc2", "web");
    for (id, want) in [
        (other_td, "different trust domain"),
        (other_dc, "different datacenter"),
    ] {
        let (_, csr) = new_request(&id).unwrap();
        let e = sign(&csr, &ctx(&root, &td)).unwrap_err();
        assert!(matches!(&e, CaError::BadCsr(m) if m.contains(want)), "{e}");
    }
    // A non-service identity (an agent ID).
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.subject_alt_names = vec![rcgen::SanType::URI(
        format!("spiffe://{td}/agent/client/dc/dc1/id/n1")
            .try_into()
            .unwrap(),
    )];
    let csr = p.serialize_request(&key).unwrap().pem().unwrap();
    assert!(sign(&csr, &ctx(&root, &td))
        .unwrap_err()
        .to_string()
        .contains("not a service identity"));
    assert!(sign("garbage", &ctx(&root, &td)).is_err());
}

#[test]
fn rotation_cross_signs() {
    let old = root::generate_root(&CaConfig::default(), CLUSTER, 1, NOW).unwrap();
    let new = root::generate_root(&CaConfig::default(), CLUSTER, 2, NOW).unwrap();
    let cross = root::cross_sign(&old, &new, 3, NOW).unwrap();
    let (new_subject, new_skid) = with_cert(&new.root.root_cert, |c| {
        (c.subject().to_string(), new.root.signing_key_id.clone())
    });
    let old_subject = with_cert(&old.root.root_cert, |c| c.subject().to_string());
    with_cert(&cross, |c| {
        assert_eq!(c.subject().to_string(), new_subject);
        assert_eq!(c.issuer().to_string(), old_subject);
        assert!(c.is_ca());
        let days =
            (c.validity().not_after.timestamp() - c.validity().not_before.timestamp()) / 86400;
        assert_eq!(days, 7);
    });
    assert_eq!(
        inspect(&cross).unwrap().authority_key_id,
        old.root.signing_key_id
    );
    assert_ne!(new_skid, old.root.signing_key_id);
    let mut rotated = old.clone();
    rotated.root.active = false;
    rotated.rotated_out_unix = NOW;
    let ttl = Duration::from_secs(3600);
    assert!(!root::prunable(&rotated, NOW + 7000, ttl));
    assert!(root::prunable(&rotated, NOW + 7201, ttl));
}

#[test]
fn supplied_root_must_match_key() {
    let a = root::generate_root(&CaConfig::default(), CLUSTER, 1, NOW).unwrap();
    let b = root::generate_root(&CaConfig::default(), CLUSTER, 2, NOW).unwrap();
    let cfg = CaConfig {
        private_key: a.private_key_pem.clone(),
        root_cert: b.root.root_cert.clone(),
        ..CaConfig::default()
    };
    assert!(root::generate_root(&cfg, CLUSTER, 3, NOW)
        .unwrap_err()
        .to_string()
        .contains("does not match"));
    let cfg = CaConfig {
        private_key: a.private_key_pem.clone(),
        root_cert: a.root.root_cert.clone(),
        ..CaConfig::default()
    };
    assert_eq!(
        root::generate_root(&cfg, CLUSTER, 3, NOW).unwrap().root.id,
        a.root.id
    );
}
