//! Pagination of the list calls, with `page_size` and `page_token` as Google's list
//! methods take them.
//!
//! Items are listed in order of their store name. A page token is the store name of the
//! last item of the previous page, so a listing goes on after it even when items were
//! created or deleted in between. Clients treat the token as opaque.

use tonic::Status;

/// Items in a page when the request sets no `page_size`. The figure is sluice's choice.
const DEFAULT_PAGE_SIZE: usize = 100;
/// Maximum items in a page, whatever `page_size` requests. The figure is sluice's choice.
const MAX_PAGE_SIZE: usize = 1000;

/// One page of a listing.
#[derive(Debug)]
pub(super) struct Page<T> {
    pub(super) items: Vec<T>,
    /// The token of the next page, empty after the last page.
    pub(super) next_page_token: String,
}

/// Returns the page of `items`, keyed by store name, that `page_size` and `page_token`
/// select.
///
/// # Errors
///
/// INVALID_ARGUMENT for a negative `page_size`.
pub(super) fn page<T>(
    mut items: Vec<(String, T)>,
    page_size: i32,
    page_token: &str,
) -> Result<Page<T>, Status> {
    let size = match usize::try_from(page_size) {
        Ok(0) => DEFAULT_PAGE_SIZE,
        Ok(size) => size.min(MAX_PAGE_SIZE),
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "page_size is {page_size}; use a positive number, or 0 for the default of \
                 {DEFAULT_PAGE_SIZE}"
            )))
        }
    };
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let mut rest = items
        .into_iter()
        .filter(|(key, _)| page_token.is_empty() || key.as_str() > page_token);
    let selected: Vec<(String, T)> = rest.by_ref().take(size).collect();
    let next_page_token = match (selected.last(), rest.next()) {
        (Some((last, _)), Some(_)) => last.clone(),
        _ => String::new(),
    };
    Ok(Page {
        items: selected.into_iter().map(|(_, item)| item).collect(),
        next_page_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|name| ((*name).to_owned(), (*name).to_owned()))
            .collect()
    }

    #[test]
    fn pages_follow_tokens() {
        let items = keyed(&["c", "a", "b"]);
        let first = page(items.clone(), 2, "").expect("first page");
        assert_eq!(first.items, ["a", "b"]);
        assert_eq!(first.next_page_token, "b");
        let second = page(items, 2, &first.next_page_token).expect("second page");
        assert_eq!(second.items, ["c"]);
        assert_eq!(second.next_page_token, "", "last page");
    }

    #[test]
    fn exact_fit_has_no_next_page() {
        let items = keyed(&["a", "b"]);
        let only = page(items, 2, "").expect("one page");
        assert_eq!(only.items.len(), 2);
        assert_eq!(only.next_page_token, "");
    }

    #[test]
    fn default_and_negative_sizes() {
        let items: Vec<(String, usize)> = (0..150).map(|i| (format!("t{i:03}"), i)).collect();
        let default = page(items, 0, "").expect("default size");
        assert_eq!(default.items.len(), DEFAULT_PAGE_SIZE);
        let status = page(keyed(&["a"]), -1, "").expect_err("negative size");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }
}
