//! `vault`: the node's persistent bus tables (EVE's vaultmgr and `/persist/vault`).
//!
//! It owns two disks: `persist`, holding an encrypted crash-safe store (services/lib/store),
//! and the read-only config partition `config`, holding the store's key (`vault.key`; never on
//! the persist disk). It follows every persistent topic (topics::persistent), commits each
//! change, and only then publishes the committed object in `vault/Stored`, from which
//! publishers restore their tables and subscribers learn the last committed state (see
//! bus_io's `persist` module). Its own state is `vault/Status`.
//!
//! Options: `format=if-blank` lets it format a blank persist disk (a node's first boot); without
//! it a blank disk is refused like a foreign one, so a wrong disk is never wiped.
//! Exit status: 1 for a missing or unusable disk or key (the launcher's policy decides).

#![no_std]
#![no_main]

extern crate alloc;

mod keeper;

use kernel::block::{BlockDevice, Disk};
use kernel::{error, info, Args};
use store::format::{Superblock, SuperblockError, SUPER_SECTOR};
use store::{FormatOptions, KeyProvider, SoftwareKey, Store};
use topics::vault::{STATUS, STORED};

kernel::service! {
    main: main,
    memory_floor_mib: 8,
    needs: [disk],
    publishes: &[STORED.decl(), STATUS.decl()],
    watches: topics::persistent::TOPICS,
}

async fn main(args: Args) -> i32 {
    let may_format = args.get("format") == Some("if-blank");
    let (store, sector_size) = match open(may_format).await {
        Ok(opened) => opened,
        Err(why) => {
            error!("vault: {why}");
            return 1;
        }
    };
    let node = bus_io::channel::node().await;
    match keeper::Keeper::start(&node, store, sector_size).await {
        Ok(keeper) => keeper.run().await,
        Err(why) => {
            error!("vault: {why}");
            1
        }
    }
}

/// Opens the store on `persist` with the key from `config`, formatting a blank disk only when
/// allowed.
async fn open(may_format: bool) -> Result<(Store<Disk>, u32), alloc::string::String> {
    use alloc::format;
    let mut disks = kernel::block::disks().await;
    let mut config = disks.take("config").map_err(|e| format!("{e}"))?;
    let partition = config_partition::ConfigPartition::read(&mut config)
        .await
        .map_err(|e| format!("{e}"))?;
    let mut key = SoftwareKey::from_file(partition.file("vault.key"));
    let mut persist = disks.take("persist").map_err(|e| format!("{e}"))?;
    let geometry = persist.geometry();
    let mut first = alloc::vec![0u8; geometry.sector_size as usize];
    persist
        .read(SUPER_SECTOR, &mut first)
        .await
        .map_err(|e| format!("persist disk: {e}"))?;
    if Superblock::decode(&first) == Err(SuperblockError::Blank) {
        if !may_format {
            return Err("the persist disk is blank; format it only if the manifest says so (format=if-blank)".into());
        }
        let key = key.key().await.map_err(|e| format!("vault.key: {e}"))?;
        let mut id = [0u8; 16];
        kernel::random::fill(&mut id).map_err(|e| format!("cannot format: {e}"))?;
        let mut options = FormatOptions::new(id);
        options.key = Some(key);
        options.max_value = 256 * 1024;
        info!(
            "vault: formatting the blank persist disk ({} MiB, encrypted)",
            geometry.bytes() >> 20
        );
        return Store::format(persist, &options)
            .await
            .map(|store| (store, geometry.sector_size))
            .map_err(|e| format!("cannot format the persist disk: {e}"));
    }
    Store::open_vault(persist, &mut key)
        .await
        .map(|store| (store, geometry.sector_size))
        .map_err(|e| format!("cannot open the persist disk: {e}"))
}
