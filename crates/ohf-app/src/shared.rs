//! Typed values in the store's shared state, changed by compare-and-set so that every
//! process sharing the store may change them at once.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ports::{RequestStore, StoreError};

/// Reads the value under `key` (`init()` when absent or unreadable).
pub async fn load<T: DeserializeOwned>(
    store: &dyn RequestStore,
    key: &str,
    init: impl Fn() -> T,
) -> Result<(T, i64), StoreError> {
    let (raw, version) = store.load_shared(key).await?;
    Ok((raw.and_then(|r| serde_json::from_str(&r).ok()).unwrap_or_else(init), version))
}

/// Applies `change` to the value under `key` and stores it, again on a fresh read when
/// another writer came first; answers the value before and after. Nothing is written when
/// `change` changes nothing.
pub async fn update<T>(
    store: &dyn RequestStore,
    key: &str,
    init: impl Fn() -> T,
    mut change: impl FnMut(&mut T),
) -> Result<(T, T), StoreError>
where
    T: Serialize + DeserializeOwned + Clone + PartialEq,
{
    for _ in 0..16 {
        let (mut value, version) = load(store, key, &init).await?;
        let before = value.clone();
        change(&mut value);
        if value == before {
            return Ok((before, value));
        }
        let text = serde_json::to_string(&value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if store.store_shared(key, &text, version).await? {
            return Ok((before, value));
        }
    }
    Err(StoreError::Unavailable(format!("'{key}' kept changing under this writer")))
}
