use cowproof_engine::{FsInfo, Geometry, Key, SendPolicy};
fn main() {
    let mut fs = FsInfo::mkfs(Geometry::tiny(), SendPolicy::Concurrent).unwrap();
    fs.check().unwrap();
    let vol = fs.create_subvolume("vol").unwrap();
    for i in 0..200u64 {
        let k = Key::new((i * 7919) % 1000, 1, 0);
        fs.insert_item(vol, k, &i.to_le_bytes()).unwrap();
        if let Err(e) = fs.check() {
            panic!("after insert {i}: {e}");
        }
    }
    fs.commit_transaction().unwrap();
    fs.check().unwrap();
    let snap = fs.snapshot("vol", "snap", true).unwrap();
    fs.check().unwrap();
    for i in 0..150u64 {
        let k = Key::new((i * 7919) % 1000, 1, 0);
        fs.delete_item(vol, k).unwrap();
        if let Err(e) = fs.check() {
            panic!("after delete {i}: {e}");
        }
        if i % 37 == 0 {
            fs.commit_transaction().unwrap();
        }
    }
    fs.commit_transaction().unwrap();
    let r = fs.check().unwrap();
    println!(
        "{r:?} snap items {}",
        fs.items_in_range(snap, Key::MIN, Key::MAX).unwrap().len()
    );
    fs.delete_subvolume("snap").unwrap();
    fs.check().unwrap();
    fs.commit_transaction().unwrap();
    fs.remount().unwrap();
    let r = fs.check().unwrap();
    println!(
        "{r:?} vol items {}",
        fs.items_in_range(vol, Key::MIN, Key::MAX).unwrap().len()
    );
}
