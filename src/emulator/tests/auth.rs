//! The emulator's token service: grants, refusals in Entra's words, bearer checking, expiry.

use crate::emulator::auth::*;
use std::collections::BTreeMap;

fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

const ISS: &str = "http://127.0.0.1:1/t/v2.0";
const ORG: &str = "http://127.0.0.1:1";

fn app_token(a: &Authority) -> String {
    a.token(
        &form(&[
            ("grant_type", "client_credentials"),
            ("client_id", DEMO_CLIENT_ID),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("scope", "http://127.0.0.1:1/.default"),
        ]),
        ISS,
        "t",
    )
    .unwrap()
    .access_token
}

#[test]
fn client_credentials_token_is_accepted_for_its_resource_only() {
    let a = Authority::new(AuthConfig::default()).unwrap();
    let t = app_token(&a);
    let claims = a.check_bearer(Some(&format!("Bearer {t}")), ORG).unwrap();
    assert_eq!(claims.identity(), "app:ats-gateway");
    let other = a
        .check_bearer(Some(&format!("Bearer {t}")), "http://elsewhere")
        .unwrap_err();
    assert!(other.description.contains("not for this environment"), "{other:?}");
    assert_eq!(a.check_bearer(None, ORG).unwrap_err().status, 401);
}

#[test]
fn wrong_secret_and_bad_scope_are_refused_like_entra() {
    let a = Authority::new(AuthConfig::default()).unwrap();
    let mut f = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", DEMO_CLIENT_ID),
        ("client_secret", "nope"),
        ("scope", "http://x/.default"),
    ]);
    let e = a.token(&f, ISS, "t").unwrap_err();
    assert_eq!((e.status, e.error), (401, "invalid_client"));
    f.insert("client_secret".into(), DEMO_CLIENT_SECRET.into());
    f.insert("scope".into(), "http://x/user_impersonation".into());
    assert_eq!(a.token(&f, ISS, "t").unwrap_err().error, "invalid_scope");
}

#[test]
fn expire_all_expires_resource_tokens() {
    let a = Authority::new(AuthConfig::default()).unwrap();
    let t = app_token(&a);
    a.expire_all();
    let e = a.check_bearer(Some(&format!("Bearer {t}")), ORG).unwrap_err();
    assert!(e.description.starts_with("ExpiredAuthTicket"), "{e:?}");
    let fresh = app_token(&a);
    assert!(a.check_bearer(Some(&format!("Bearer {fresh}")), ORG).is_ok());
    assert_eq!(a.stats()["refused"], 1);
    assert_eq!(a.stats()["tokensIssued"]["client_credentials"], 2);
}

#[test]
fn on_behalf_of_exchanges_a_users_token_for_the_gateway() {
    let a = Authority::new(AuthConfig::default()).unwrap();
    let user = a
        .token(
            &form(&[
                ("grant_type", "password"),
                ("client_id", DEMO_CLIENT_ID),
                ("username", "alice"),
                ("password", DEMO_PASSWORD),
                ("scope", "api://ats-gateway/access_as_user"),
            ]),
            ISS,
            "t",
        )
        .unwrap()
        .access_token;
    // A user token is not a Dataverse token.
    assert!(a.check_bearer(Some(&format!("Bearer {user}")), ORG).is_err());
    let obo = |assertion: &str| {
        a.token(
            &form(&[
                ("grant_type", GRANT_OBO),
                ("client_id", DEMO_CLIENT_ID),
                ("client_secret", DEMO_CLIENT_SECRET),
                ("assertion", assertion),
                ("requested_token_use", "on_behalf_of"),
                ("scope", "http://127.0.0.1:1/user_impersonation"),
            ]),
            ISS,
            "t",
        )
    };
    let exchanged = obo(&user).unwrap().access_token;
    let claims = a.check_bearer(Some(&format!("Bearer {exchanged}")), ORG).unwrap();
    assert_eq!(claims.identity(), "user:alice");
    // An app token is no assertion for on-behalf-of, nor is garbage.
    assert_eq!(obo(&app_token(&a)).unwrap_err().error, "invalid_grant");
    assert_eq!(obo("x.y.z").unwrap_err().error, "invalid_grant");
}
