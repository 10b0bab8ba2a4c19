//! Auth methods, binding rules, login and logout through the whole router, with JWTs signed here by a key whose
//! JWKS is a file: the whole path a workload takes with a credential from its platform, no identity provider.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::tests::TestApi;
use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use crate::acl_tests::ROOT;

struct Issuer {
    pair: EcdsaKeyPair,
}

impl Issuer {
    fn new() -> Issuer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Issuer { pair }
    }

    fn jwks(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({"keys": [{"kty": "EC", "crv": "P-256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])}]})
    }

    fn jwt(&self, claims: Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "typ": "JWT"}).to_string());
        let p = URL_SAFE_NO_PAD.encode(claims.to_string());
        let msg = format!("{h}.{p}");
        let sig = self
            .pair
            .sign(&SystemRandom::new(), msg.as_bytes())
            .unwrap();
        format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

fn now_secs() -> u64 {
    weft_server::now_ms() / 1000
}

fn claims(service: &str, aud: &str, groups: &[&str]) -> Value {
    json!({"iss": "ci", "aud": aud, "exp": now_secs() + 300, "iat": now_secs(), "svc": service, "groups": groups})
}

async fn api() -> TestApi {
    let api = crate::acl_tests::api(weft_types::DefaultPolicy::Deny).await;
    crate::acl_tests::bootstrap(&api).await;
    api
}

/// A directory holding the issuer's JWKS, removed when dropped.
struct JwksFile(std::path::PathBuf);

impl JwksFile {
    fn new(issuer: &Issuer) -> JwksFile {
        let dir = std::env::temp_dir().join(format!(
            "weft-login-{}-{}",
            std::process::id(),
            weft_types::ids::new_uuid()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("jwks.json"), issuer.jwks().to_string()).unwrap();
        JwksFile(dir)
    }
    fn url(&self) -> String {
        format!("file://{}", self.0.join("jwks.json").display())
    }
}

impl Drop for JwksFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn method_body(jwks: &JwksFile) -> Value {
    json!({
        "Name": "ci", "Type": "jwt", "MaxTokenTTL": "10m",
        "Config": {
            "JWKSURL": jwks.url(), "JWTSupportedAlgs": ["ES256"], "BoundIssuer": "ci", "BoundAudiences": ["weft"],
            "ClaimMappings": {"svc": "service"}, "ListClaimMappings": {"groups": "groups"},
        },
    })
}

async fn put(api: &TestApi, path: &str, body: Value, token: Option<&str>) -> crate::tests::Answer {
    api.call_as("PUT", path, &body.to_string(), token).await
}

async fn login(api: &TestApi, jwt: &str) -> crate::tests::Answer {
    let body = json!({"AuthMethod": "ci", "BearerToken": jwt, "Meta": {"pod": "p1"}});
    api.call_as("POST", "/v1/acl/login", &body.to_string(), None)
        .await
}

#[tokio::test]
async fn methods_and_rules_are_checked_when_written() {
    let api = api().await;
    let issuer = Issuer::new();
    let jwks = JwksFile::new(&issuer);
    let denied = put(&api, "/v1/acl/auth-method", method_body(&jwks), None).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let m = put(&api, "/v1/acl/auth-method", method_body(&jwks), Some(ROOT)).await;
    assert_eq!(m.status, StatusCode::OK, "{}", m.text());
    assert_eq!(m.json()["Type"], "jwt");
    assert_eq!(m.json()["MaxTokenTTL"], "10m0s");
    assert!(m.json()["CreateIndex"].as_u64().unwrap() > 0);
    let again = put(&api, "/v1/acl/auth-method", method_body(&jwks), Some(ROOT)).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    for (patch, why) in [
        (json!({"Name": "k8s", "Type": "kubernetes"}), "Type"),
        (json!({"Name": "bad name"}), "Name"),
        (json!({"Name": "m2", "MaxTokenTTL": "1s"}), "MaxTokenTTL"),
        (
            json!({"Name": "m3", "Config": {"JWKSURL": "https://idp.example/keys"}}),
            "file://",
        ),
        (
            json!({"Name": "m4", "Config": {"JWKSURL": jwks.url(), "Bogus": 1}}),
            "Bogus",
        ),
    ] {
        let mut body = method_body(&jwks);
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let a = put(&api, "/v1/acl/auth-method", body, Some(ROOT)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{patch}");
        assert!(a.text().contains(why), "{} lacks {why}", a.text());
    }
    let list = api
        .call_as("GET", "/v1/acl/auth-methods", "", Some(ROOT))
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(
        list[0].get("Config").is_none(),
        "the list leaves configs out"
    );
    let read = api
        .call_as("GET", "/v1/acl/auth-method/ci", "", Some(ROOT))
        .await;
    assert_eq!(read.json()["Config"]["BoundIssuer"], "ci");
    let missing = api
        .call_as("GET", "/v1/acl/auth-method/nope", "", Some(ROOT))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    for (rule, why) in [
        (
            json!({"AuthMethod": "nope", "BindType": "service", "BindName": "web"}),
            "nope",
        ),
        (
            json!({"BindType": "service", "BindName": "web"}),
            "AuthMethod",
        ),
        (
            json!({"AuthMethod": "ci", "BindType": "service", "BindName": "${value.nope}"}),
            "value.nope",
        ),
        (
            json!({"AuthMethod": "ci", "BindType": "everything", "BindName": "web"}),
            "BindType",
        ),
        (
            json!({"AuthMethod": "ci", "BindType": "service", "BindName": "web", "Selector": "value.service =="}),
            "Selector",
        ),
    ] {
        let a = put(&api, "/v1/acl/binding-rule", rule.clone(), Some(ROOT)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{rule}");
        assert!(a.text().contains(why), "{} lacks {why}", a.text());
    }
    let r = put(
        &api,
        "/v1/acl/binding-rule",
        json!({"AuthMethod": "ci", "BindType": "service", "BindName": "${value.service}"}),
        Some(ROOT),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let id = r.json()["ID"].as_str().unwrap().to_string();
    let path = format!("/v1/acl/binding-rule/{id}");
    let updated = put(
        &api,
        &path,
        json!({"BindType": "service", "BindName": "api-${value.service}", "Description": "d"}),
        Some(ROOT),
    )
    .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text());
    assert_eq!(updated.json()["BindName"], "api-${value.service}");
    assert_eq!(updated.json()["AuthMethod"], "ci");
    let rules = api
        .call_as("GET", "/v1/acl/binding-rules?authmethod=ci", "", Some(ROOT))
        .await
        .json();
    assert_eq!(rules.as_array().unwrap().len(), 1);
    let none = api
        .call_as(
            "GET",
            "/v1/acl/binding-rules?authmethod=other",
            "",
            Some(ROOT),
        )
        .await
        .json();
    assert_eq!(none, json!([]));
}

#[tokio::test]
async fn a_login_gets_what_the_matching_rules_grant_and_nothing_else() {
    let api = api().await;
    let issuer = Issuer::new();
    let jwks = JwksFile::new(&issuer);
    let m = put(&api, "/v1/acl/auth-method", method_body(&jwks), Some(ROOT)).await;
    assert_eq!(m.status, StatusCode::OK, "{}", m.text());
    let r = put(
        &api,
        "/v1/acl/binding-rule",
        json!({"AuthMethod": "ci", "BindType": "service", "BindName": "${value.service}",
               "Selector": "\"deploy\" in list.groups"}),
        Some(ROOT),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    let a = login(&api, &issuer.jwt(claims("web", "weft", &["deploy"]))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let token = a.json();
    assert_eq!(token["AuthMethod"], "ci");
    assert_eq!(token["ServiceIdentities"], json!([{"ServiceName": "web"}]));
    assert_eq!(token["Local"], true);
    assert_eq!(
        token["Description"],
        r#"token created via login: {"pod":"p1"}"#
    );
    assert!(token["ExpirationTime"].is_string(), "MaxTokenTTL bounds it");
    let secret = token["SecretID"].as_str().unwrap().to_string();
    let leaf = api
        .call_as("GET", "/v1/agent/connect/ca/leaf/web", "", Some(&secret))
        .await;
    assert_eq!(leaf.status, StatusCode::OK, "{}", leaf.text());
    let other = api
        .call_as("GET", "/v1/agent/connect/ca/leaf/db", "", Some(&secret))
        .await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    let listed = api
        .call_as("GET", "/v1/acl/tokens?authmethod=ci", "", Some(ROOT))
        .await
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // Refusals: each with its reason, none creating a token.
    let stranger = Issuer::new();
    for (jwt, status, text) in [
        (stranger.jwt(claims("web", "weft", &["deploy"])), StatusCode::FORBIDDEN, "signature"),
        (issuer.jwt(claims("web", "other", &["deploy"])), StatusCode::FORBIDDEN, "audience"),
        (issuer.jwt(json!({"aud": "weft", "iss": "ci", "exp": now_secs() - 3600, "svc": "web", "groups": ["deploy"]})), StatusCode::FORBIDDEN, "expired"),
        (issuer.jwt(claims("web", "weft", &["dev"])), StatusCode::FORBIDDEN, "Permission denied"),
        (issuer.jwt(claims("Not A Name", "weft", &["deploy"])), StatusCode::FORBIDDEN, "invalid name"),
        ("not.a.jwt".to_string(), StatusCode::FORBIDDEN, "Permission denied: malformed"),
    ] {
        let a = login(&api, &jwt).await;
        assert_eq!(a.status, status, "{}", a.text());
        assert!(a.text().starts_with("Permission denied"), "{}", a.text());
        assert!(a.text().contains(text), "{} lacks {text}", a.text());
    }
    let unknown = api
        .call_as(
            "POST",
            "/v1/acl/login",
            &json!({"AuthMethod": "nope", "BearerToken": "x"}).to_string(),
            None,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::FORBIDDEN);
    assert_eq!(unknown.text(), "ACL not found");
    let listed = api
        .call_as("GET", "/v1/acl/tokens?authmethod=ci", "", Some(ROOT))
        .await
        .json();
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "refused logins create nothing"
    );

    // Logout: only a login token, only with itself.
    let no_token = api.call_as("POST", "/v1/acl/logout", "", None).await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    assert_eq!(no_token.text(), "ACL not found");
    let root = api.call_as("POST", "/v1/acl/logout", "", Some(ROOT)).await;
    assert_eq!(root.status, StatusCode::FORBIDDEN);
    assert!(root.text().starts_with("Permission denied"));
    let out = api
        .call_as("POST", "/v1/acl/logout", "", Some(&secret))
        .await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.text());
    let gone = api
        .call_as("GET", "/v1/acl/token/self", "", Some(&secret))
        .await;
    assert_eq!(gone.status, StatusCode::FORBIDDEN);

    // Deleting the method takes its rules and the tokens it minted.
    let again = login(&api, &issuer.jwt(claims("web", "weft", &["deploy"]))).await;
    let secret = again.json()["SecretID"].as_str().unwrap().to_string();
    let del = api
        .call_as("DELETE", "/v1/acl/auth-method/ci", "", Some(ROOT))
        .await;
    assert_eq!(del.status, StatusCode::OK, "{}", del.text());
    let gone = api
        .call_as("GET", "/v1/acl/token/self", "", Some(&secret))
        .await;
    assert_eq!(gone.status, StatusCode::FORBIDDEN);
    let rules = api
        .call_as("GET", "/v1/acl/binding-rules", "", Some(ROOT))
        .await
        .json();
    assert_eq!(rules, json!([]));
}
