//! `GET /groups/:id/projects` as GitLab answers it: `include_subgroups` (default false),
//! `with_shared` (default true), `order_by`/`sort`, offset pages (`page`, `per_page` default 20,
//! max 100) with `Link` prev/next/first/last and the `x-*` page headers, and the project fields
//! a client reads (`gitlabhq/gitlabhq:doc/api/groups.md`, `doc/api/rest/_index.md`).

use super::*;

pub(super) async fn group_projects(
    State(s): St,
    UrlPath(id): UrlPath<String>,
    RawQuery(query): RawQuery,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    // As sent: `/api/v4/groups/acme%2Fteam/projects` (the router decodes `id`).
    let raw = uri
        .path()
        .strip_prefix("/api/v4")
        .unwrap_or(uri.path())
        .to_owned();
    record(&s, &raw, &query);
    bump(&s.counters.list_requests);
    if let Some(resp) = s.fault(Route::List) {
        return resp;
    }
    if let Err(r) = s.check_token(&headers) {
        return *r;
    }
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let param = |n: &str| {
        params
            .iter()
            .rev()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    let flag = |n: &str, default: bool| param(n).map_or(default, |v| v == "true");
    let per_page = param("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(DEFAULT_PER_PAGE)
        .clamp(1, MAX_PER_PAGE);
    let page = param("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let inner = s.lock();
    // `:id` is a numeric id or the full path (decoded from `acme%2Fteam` by the router).
    let group = inner
        .groups
        .iter()
        .find(|(path, g)| *path == &id || g.id.to_string() == id);
    let Some((group_path, group)) = group else {
        return error(StatusCode::NOT_FOUND, "404 Group Not Found");
    };
    let subgroups = flag("include_subgroups", false);
    let mut listed: Vec<&Project> = inner
        .projects
        .iter()
        .filter(|p| {
            &p.namespace == group_path
                || (subgroups && p.namespace.starts_with(&format!("{group_path}/")))
                || (flag("with_shared", true) && group.shared.contains(&p.id))
        })
        .collect();
    // Default order: `created_at` descending; ids grow with creation here.
    let ascending = param("sort").as_deref() == Some("asc");
    listed.sort_by_key(|p| p.id);
    if !ascending {
        listed.reverse();
    }
    let total = listed.len();
    let last = total.div_ceil(per_page).max(1);
    let values: Vec<Value> = listed
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|p| project_json(&s.base, &inner, p))
        .collect();
    drop(inner);
    let link = |to: usize| {
        let mut url = url::Url::parse(&format!(
            "{}/api/v4/groups/{}/projects",
            s.base,
            urlencode(&id)
        ))
        .unwrap();
        url.query_pairs_mut()
            .extend_pairs(params.iter().filter(|(k, _)| k != "page"))
            .append_pair("page", &to.to_string());
        url.to_string()
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", link(page - 1)));
    }
    if page < last {
        links.push(format!("<{}>; rel=\"next\"", link(page + 1)));
    }
    links.push(format!("<{}>; rel=\"first\"", link(1)));
    links.push(format!("<{}>; rel=\"last\"", link(last)));
    let mut resp = json_response(StatusCode::OK, &Value::Array(values));
    let h = resp.headers_mut();
    h.insert(
        header::LINK,
        HeaderValue::from_str(&links.join(", ")).unwrap(),
    );
    let n = |v: usize| HeaderValue::from(v as u64);
    h.insert("x-page", n(page));
    h.insert("x-per-page", n(per_page));
    h.insert("x-total", n(total));
    h.insert("x-total-pages", n(last));
    h.insert(
        "x-next-page",
        if page < last {
            n(page + 1)
        } else {
            HeaderValue::from_static("")
        },
    );
    h.insert(
        "x-prev-page",
        if page > 1 {
            n(page - 1)
        } else {
            HeaderValue::from_static("")
        },
    );
    resp
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// One project as `GET /groups/:id/projects` lists it (the fields a client reads).
fn project_json(base: &str, inner: &Inner, p: &Project) -> Value {
    let full = format!("{}/{}", p.namespace, p.path);
    let group_id = inner.groups.get(&p.namespace).map_or(0, |g| g.id);
    let (group_name, group_path) = p
        .namespace
        .rsplit_once('/')
        .map_or((p.namespace.as_str(), p.namespace.as_str()), |(_, last)| {
            (last, last)
        });
    json!({
        "id": p.id,
        "name": p.path,
        "path": p.path,
        "name_with_namespace": full.replace('/', " / "),
        "path_with_namespace": full,
        "description": null,
        "default_branch": if p.empty { Value::Null } else { Value::from(p.default_branch.clone()) },
        "empty_repo": p.empty,
        "archived": false,
        "visibility": "private",
        "repository_access_level": "enabled",
        "http_url_to_repo": format!("{base}/{full}.git"),
        "ssh_url_to_repo": format!("git@127.0.0.1:{full}.git"),
        "web_url": format!("{base}/{full}"),
        "created_at": "2026-11-01T10:00:00.000Z",
        "last_activity_at": "2026-11-30T10:00:00.000Z",
        "namespace": {"id": group_id, "name": group_name, "path": group_path, "kind": "group",
                      "full_path": p.namespace},
    })
}
