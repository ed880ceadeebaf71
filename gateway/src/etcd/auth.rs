//! `etcdserverpb.Auth`: every RPC is one upstream Auth call; storaged checks the caller,
//! hashes passwords, and makes tokens.

use crate::error::Error;
use crate::upstream::Upstream;
use metastore_internal_proto::storage::auth_request::Op;
use metastore_internal_proto::storage::auth_response::Result as AuthResult;
use metastore_proto::etcdserverpb::auth_server::Auth;
use metastore_proto::etcdserverpb::*;
use tonic::{Request, Response, Status};

pub struct AuthService {
    upstream: Upstream,
}

impl AuthService {
    pub fn new(upstream: Upstream) -> Self {
        Self { upstream }
    }
}

/// One RPC: wrap the request in its op, call upstream, take the matching answer out.
macro_rules! auth_rpcs {
    ($($method:ident($req:ty) -> $resp:ty = $variant:ident;)*) => {
        #[tonic::async_trait]
        impl Auth for AuthService {
            $(
                async fn $method(&self, request: Request<$req>) -> Result<Response<$resp>, Status> {
                    match self.upstream.auth(Op::$variant(request.into_inner())).await? {
                        AuthResult::$variant(r) => Ok(Response::new(r)),
                        other => Err(Error::Internal(format!(
                            "storage answered {} with {other:?}",
                            stringify!($variant)
                        ))
                        .into()),
                    }
                }
            )*
        }
    };
}

auth_rpcs! {
    auth_enable(AuthEnableRequest) -> AuthEnableResponse = Enable;
    auth_disable(AuthDisableRequest) -> AuthDisableResponse = Disable;
    auth_status(AuthStatusRequest) -> AuthStatusResponse = Status;
    authenticate(AuthenticateRequest) -> AuthenticateResponse = Authenticate;
    user_add(AuthUserAddRequest) -> AuthUserAddResponse = UserAdd;
    user_get(AuthUserGetRequest) -> AuthUserGetResponse = UserGet;
    user_list(AuthUserListRequest) -> AuthUserListResponse = UserList;
    user_delete(AuthUserDeleteRequest) -> AuthUserDeleteResponse = UserDelete;
    user_change_password(AuthUserChangePasswordRequest) -> AuthUserChangePasswordResponse =
        UserChangePassword;
    user_grant_role(AuthUserGrantRoleRequest) -> AuthUserGrantRoleResponse = UserGrantRole;
    user_revoke_role(AuthUserRevokeRoleRequest) -> AuthUserRevokeRoleResponse = UserRevokeRole;
    role_add(AuthRoleAddRequest) -> AuthRoleAddResponse = RoleAdd;
    role_get(AuthRoleGetRequest) -> AuthRoleGetResponse = RoleGet;
    role_list(AuthRoleListRequest) -> AuthRoleListResponse = RoleList;
    role_delete(AuthRoleDeleteRequest) -> AuthRoleDeleteResponse = RoleDelete;
    role_grant_permission(AuthRoleGrantPermissionRequest) -> AuthRoleGrantPermissionResponse =
        RoleGrantPermission;
    role_revoke_permission(AuthRoleRevokePermissionRequest) -> AuthRoleRevokePermissionResponse =
        RoleRevokePermission;
}
