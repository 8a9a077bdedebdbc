//! The conditional-write properties (create-only, compare-and-swap), which the run lock
//! relies on: of concurrent writers exactly one wins, and a loser writes nothing.

use bytes::Bytes;

use super::key;
use crate::store::{Key, PutOptions, Store};

/// How many writers race in the concurrency properties.
const RACERS: usize = 8;

async fn content(store: &dyn Store, key: &Key) -> Option<Bytes> {
    store
        .get_versioned(key)
        .await
        .expect("get_versioned")
        .map(|v| v.data)
}

/// `put_if_absent` creates once; a second call writes nothing; the version it returns is the
/// one `get_versioned` reports; a missing key reads as `None`.
pub async fn put_if_absent(store: &dyn Store, base: &Key) {
    let k = key(base, "lock/create");
    assert!(store.get_versioned(&k).await.unwrap().is_none());
    let opts = PutOptions::default();
    let v1 = store
        .put_if_absent(&k, Bytes::from_static(b"first"), &opts)
        .await
        .expect("put_if_absent")
        .expect("the key was free");
    let again = store
        .put_if_absent(&k, Bytes::from_static(b"second"), &opts)
        .await
        .expect("put_if_absent");
    assert!(again.is_none(), "a taken key must not be written");
    let read = store.get_versioned(&k).await.unwrap().expect("created");
    assert_eq!(&read.data[..], b"first");
    assert_eq!(read.version, v1);
    // After a delete the key is free again.
    store.delete(&k).await.unwrap();
    assert!(
        store
            .put_if_absent(&k, Bytes::from_static(b"third"), &opts)
            .await
            .unwrap()
            .is_some()
    );
}

/// Two (here: eight) concurrent creators: exactly one wins, and the object is the winner's.
pub async fn concurrent_creators(store: &dyn Store, base: &Key) {
    let k = key(base, "lock/race");
    let opts = PutOptions::default();
    let results = futures::future::join_all((0..RACERS).map(|i| {
        let (k, opts) = (k.clone(), opts.clone());
        async move {
            let won = store
                .put_if_absent(&k, Bytes::from(format!("racer {i}")), &opts)
                .await
                .expect("put_if_absent");
            (i, won.is_some())
        }
    }))
    .await;
    let winners: Vec<usize> = results.iter().filter(|r| r.1).map(|r| r.0).collect();
    assert_eq!(winners.len(), 1, "exactly one creator wins: {winners:?}");
    assert_eq!(
        content(store, &k).await.as_deref(),
        Some(format!("racer {}", winners[0]).as_bytes())
    );
}

/// `put_if_version` replaces only the expected version: a stale version or a missing key
/// writes nothing, and of concurrent swaps from the same version exactly one wins.
pub async fn put_if_version(store: &dyn Store, base: &Key) {
    let k = key(base, "lock/swap");
    let opts = PutOptions::default();
    let missing = store
        .put_if_version(
            &k,
            Bytes::from_static(b"x"),
            &opts,
            &crate::store::Version("v".into()),
        )
        .await
        .expect("put_if_version on a missing key");
    assert!(missing.is_none(), "nothing to swap");
    assert!(content(store, &k).await.is_none(), "and nothing created");

    let v1 = store
        .put_if_absent(&k, Bytes::from_static(b"one"), &opts)
        .await
        .unwrap()
        .unwrap();
    let v2 = store
        .put_if_version(&k, Bytes::from_static(b"two"), &opts, &v1)
        .await
        .expect("put_if_version")
        .expect("the expected version was current");
    assert_ne!(v1, v2, "a write makes a new version");
    let stale = store
        .put_if_version(&k, Bytes::from_static(b"stale"), &opts, &v1)
        .await
        .unwrap();
    assert!(stale.is_none(), "a stale version must not be written");
    let read = store.get_versioned(&k).await.unwrap().unwrap();
    assert_eq!(&read.data[..], b"two");
    assert_eq!(read.version, v2);

    let results = futures::future::join_all((0..RACERS).map(|i| {
        let (k, opts, v2) = (k.clone(), opts.clone(), v2.clone());
        async move {
            let won = store
                .put_if_version(&k, Bytes::from(format!("swapper {i}")), &opts, &v2)
                .await
                .expect("put_if_version");
            (i, won.is_some())
        }
    }))
    .await;
    let winners: Vec<usize> = results.iter().filter(|r| r.1).map(|r| r.0).collect();
    assert_eq!(winners.len(), 1, "exactly one swap wins: {winners:?}");
    assert_eq!(
        content(store, &k).await.as_deref(),
        Some(format!("swapper {}", winners[0]).as_bytes())
    );
}
