//! The admin-call corpus: every auth management call, right and wrong, on a fresh store, as
//! `step: answer` lines for a comparison with a real etcd.

use super::{ROOT_PASSWORD, login, outcome};
use anyhow::Result;
use etcd_client::{Client, Permission, RoleRevokePermissionOptions, UserAddOptions};

fn nothing<T>(_: &T) -> String {
    String::new()
}

fn perms(r: &etcd_client::RoleGetResponse) -> String {
    let list: Vec<String> = r
        .permissions()
        .iter()
        .map(|p| {
            format!(
                "{} {:?}..{:?}",
                p.get_type(),
                String::from_utf8_lossy(p.key()),
                String::from_utf8_lossy(p.range_end())
            )
        })
        .collect();
    list.join(", ")
}

async fn authenticate(c: &Client, user: &str, password: &str) -> String {
    let r = c
        .auth_client()
        .authenticate(user.into(), password.into())
        .await;
    outcome(r, |r| format!("token given: {}", !r.token().is_empty()))
}

/// Runs the corpus against `endpoint` (a fresh store).
pub async fn run(endpoint: &str) -> Result<Vec<String>> {
    let mut c = Client::connect([endpoint], None).await?;
    let mut out: Vec<String> = Vec::new();
    macro_rules! step {
        ($what:expr, $call:expr) => {
            step!($what, $call, nothing)
        };
        ($what:expr, $call:expr, $body:expr) => {{
            let answer = outcome($call.await, $body);
            out.push(format!("{}: {}", $what, answer));
        }};
    }
    step!("enable without root", c.auth_enable());
    step!("user add empty name", c.user_add("", "pw", None));
    step!("user add root", c.user_add("root", ROOT_PASSWORD, None));
    step!("enable without the root role", c.auth_enable());
    step!("user add root again", c.user_add("root", "other", None));
    step!("user get missing", c.user_get("nobody"));
    step!("user delete missing", c.user_delete("nobody"));
    step!(
        "user change password missing",
        c.user_change_password("nobody", "pw")
    );
    step!("user grant missing role", c.user_grant_role("root", "nope"));
    step!(
        "user grant role to missing user",
        c.user_grant_role("nobody", "root")
    );
    step!("role add empty name", c.role_add(""));
    step!("role add r1", c.role_add("r1"));
    step!("role add r1 again", c.role_add("r1"));
    step!("role get missing", c.role_get("nope"));
    step!("role get r1 (empty)", c.role_get("r1"), perms);
    step!(
        "role grant read /a",
        c.role_grant_permission("r1", Permission::read("/a"))
    );
    step!(
        "role grant rw prefix /p/",
        c.role_grant_permission("r1", Permission::read_write("/p/").with_prefix())
    );
    step!(
        "role grant write from /f",
        c.role_grant_permission("r1", Permission::write("/f").with_from_key())
    );
    step!(
        "role grant read [/b, /c)",
        c.role_grant_permission("r1", Permission::read("/b").with_range_end("/c"))
    );
    step!(
        "role grant write /a (again, other type)",
        c.role_grant_permission("r1", Permission::write("/a"))
    );
    step!(
        "role grant to missing role",
        c.role_grant_permission("nope", Permission::read("/a"))
    );
    step!("role get r1", c.role_get("r1"), perms);
    step!(
        "role revoke not granted",
        c.role_revoke_permission("r1", "/zz", None)
    );
    step!(
        "role revoke /p/ prefix",
        c.role_revoke_permission(
            "r1",
            "/p/",
            Some(RoleRevokePermissionOptions::new().with_prefix())
        )
    );
    step!(
        "role revoke from missing role",
        c.role_revoke_permission("nope", "/a", None)
    );
    step!("role get r1 after revoke", c.role_get("r1"), perms);
    step!(
        "user revoke role not granted",
        c.user_revoke_role("root", "r1")
    );
    step!("user grant root root", c.user_grant_role("root", "root"));
    step!(
        "user grant root root again",
        c.user_grant_role("root", "root")
    );
    step!("user grant root r1", c.user_grant_role("root", "r1"));
    step!("user add zed", c.user_add("zed", "zed-pw", None));
    step!("user add alpha", c.user_add("alpha", "alpha-pw", None));
    step!(
        "user add nopw (no password)",
        c.user_add("nopw", "", Some(UserAddOptions::new().with_no_pwd()))
    );
    step!("user grant alpha r1", c.user_grant_role("alpha", "r1"));
    step!("role add b-role", c.role_add("b-role"));
    step!("user list", c.user_list(), |r| format!("{:?}", r.users()));
    step!("role list", c.role_list(), |r| format!("{:?}", r.roles()));
    step!("user get root", c.user_get("root"), |r| format!(
        "{:?}",
        r.roles()
    ));
    step!("role get root", c.role_get("root"), perms);
    out.push(format!(
        "authenticate while off: {}",
        authenticate(&c, "root", ROOT_PASSWORD).await
    ));
    step!("enable", c.auth_enable());
    step!("enable again", c.auth_enable());
    step!("anonymous put", c.put("/a", "v", None));
    step!("anonymous user list", c.user_list(), |r| format!(
        "{:?}",
        r.users()
    ));
    out.push(format!(
        "authenticate wrong password: {}",
        authenticate(&c, "root", "wrong").await
    ));
    out.push(format!(
        "authenticate missing user: {}",
        authenticate(&c, "ghost", "x").await
    ));
    out.push(format!(
        "authenticate no-password user: {}",
        authenticate(&c, "nopw", "").await
    ));
    out.push(format!(
        "authenticate alpha: {}",
        authenticate(&c, "alpha", "alpha-pw").await
    ));

    let mut root = login(endpoint, "root").await?;
    step!(
        "root revokes its root role",
        root.user_revoke_role("root", "root")
    );
    step!("root deletes the root role", root.role_delete("root"));
    step!("root deletes root", root.user_delete("root"));
    step!(
        "root changes alpha's password",
        root.user_change_password("alpha", "new-pw")
    );
    out.push(format!(
        "authenticate alpha, old password: {}",
        authenticate(&c, "alpha", "alpha-pw").await
    ));
    out.push(format!(
        "authenticate alpha, new password: {}",
        authenticate(&c, "alpha", "new-pw").await
    ));
    let mut alpha = login_with(endpoint, "alpha", "new-pw").await?;
    step!("alpha reads /a", alpha.get("/a", None), |r| format!(
        "{} keys",
        r.kvs().len()
    ));
    step!("alpha writes /a", alpha.put("/a", "v", None));
    step!("alpha writes /f/x", alpha.put("/f/x", "v", None));
    step!("alpha writes /b", alpha.put("/b", "v", None));
    step!("alpha adds a user", alpha.user_add("x", "x", None));
    step!("alpha disables auth", alpha.auth_disable());
    step!("alpha gets itself", alpha.user_get("alpha"), |r| format!(
        "{:?}",
        r.roles()
    ));
    step!("alpha gets r1", alpha.role_get("r1"), perms);
    step!("alpha gets b-role", alpha.role_get("b-role"), perms);
    step!("root deletes r1", root.role_delete("r1"));
    step!(
        "alpha reads /a without r1",
        alpha.get("/a", None),
        |r| format!("{} keys", r.kvs().len())
    );
    step!(
        "user get alpha after the role went",
        root.user_get("alpha"),
        |r| format!("{:?}", r.roles())
    );
    step!("root deletes alpha", root.user_delete("alpha"));
    step!(
        "alpha after being deleted",
        alpha.get("/a", None),
        |r| format!("{} keys", r.kvs().len())
    );
    step!("root deletes zed", root.user_delete("zed"));
    step!("user list", root.user_list(), |r| format!(
        "{:?}",
        r.users()
    ));
    step!("role list", root.role_list(), |r| format!(
        "{:?}",
        r.roles()
    ));
    step!("root reads", root.get("/", None), |r| format!(
        "{} keys",
        r.kvs().len()
    ));
    step!("disable", root.auth_disable());
    step!(
        "root's token after disable",
        root.get("/a", None),
        |r| format!("{} keys", r.kvs().len())
    );
    step!("disable again", c.auth_disable());
    step!("anonymous put after disable", c.put("/a", "v", None));
    step!("root deletes root while off", c.user_delete("root"));
    step!("user list at the end", c.user_list(), |r| format!(
        "{:?}",
        r.users()
    ));
    Ok(out)
}

async fn login_with(endpoint: &str, user: &str, password: &str) -> Result<Client> {
    let options = etcd_client::ConnectOptions::new().with_user(user, password);
    Ok(Client::connect([endpoint], Some(options)).await?)
}
