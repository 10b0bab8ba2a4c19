//! The leader's ACL duties: create what the ACL system needs (the `global-management` policy, the anonymous token,
//! the operator's initial management token) and reap expired tokens. Expired tokens already resolve to nothing at
//! their expiry; reaping only keeps the tables from growing.

use crate::Server;
use std::time::Duration;
use weft_state::Command;
use weft_types::acl::{
    AclGrants, AclLink, AclToken, ANONYMOUS_ACCESSOR, ANONYMOUS_SECRET, GLOBAL_MANAGEMENT_ID,
    GLOBAL_MANAGEMENT_NAME,
};

const REAP_EVERY: Duration = Duration::from_secs(30);

pub(crate) async fn run(server: Server) {
    if !server.acl_enabled() {
        return;
    }
    loop {
        match init(&server).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, "could not initialise ACLs; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    let mut ticker = tokio::time::interval(REAP_EVERY);
    loop {
        ticker.tick().await;
        let now = crate::now_ms();
        let any_expired = server.read().tokens().any(|t| t.expired(now));
        if any_expired {
            if let Err(e) = server.write(Command::AclReapExpired).await {
                tracing::warn!(error = %e, "could not reap expired ACL tokens");
            }
        }
    }
}

/// Creates what the ACL system needs, once (the leader runs it on taking office; tests call it directly).
pub async fn init(server: &Server) -> Result<(), weft_state::StoreError> {
    let management = server.config().acl.initial_management.clone();
    let done = {
        let store = server.read();
        store.acl_policy(GLOBAL_MANAGEMENT_ID).is_some()
            && store.token(ANONYMOUS_ACCESSOR).is_some()
            && management
                .as_deref()
                .is_none_or(|s| store.token_by_secret(s).is_some())
    };
    if done {
        return Ok(());
    }
    let now = crate::now_ms();
    let anonymous = AclToken {
        accessor_id: ANONYMOUS_ACCESSOR.into(),
        secret_id: ANONYMOUS_SECRET.into(),
        description: "Anonymous Token".into(),
        create_time: now,
        ..AclToken::default()
    };
    let management = management.map(|secret| {
        Box::new(AclToken {
            accessor_id: weft_types::ids::new_uuid(),
            secret_id: secret,
            description: "Initial Management Token".into(),
            grants: AclGrants {
                policies: vec![AclLink {
                    id: GLOBAL_MANAGEMENT_ID.into(),
                    name: GLOBAL_MANAGEMENT_NAME.into(),
                }],
                ..AclGrants::default()
            },
            create_time: now,
            ..AclToken::default()
        })
    });
    server
        .write(Command::AclInit {
            anonymous: Box::new(anonymous),
            management,
        })
        .await
        .map(|_| ())
}
