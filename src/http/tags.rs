//! The tags that group the operations in the OpenAPI document and Swagger UI.

use poem_openapi::Tags;

#[derive(Tags)]
pub enum ApiTags {
    /// OAuth 2.0 / OpenID Connect endpoints
    #[oai(rename = "OAuth 2.0")]
    OAuth,
    /// Discovery metadata and signing keys
    Discovery,
    /// Accounts and profiles
    Users,
    /// The demonstration resource of the authorization model
    Articles,
    /// User, client, role, key and audit-log administration (permission-guarded)
    #[oai(rename = "Administration")]
    Admin,
    /// Health and readiness
    Operations,
}
