use super::*;

#[test]
fn device_nodes_are_refused_and_files_are_not() {
    let path = ScriptPath::parse("vol/node").unwrap();
    let null = rustix::fs::open("/dev/null", OFlags::RDONLY, Mode::empty()).unwrap();
    match refuse_special(&null, &path) {
        Err(Stop::Refused(reason)) => assert!(reason.contains("refuses device nodes")),
        _ => panic!("/dev/null was not refused"),
    }
    let directory = tempfile::tempdir().unwrap();
    let file_path = directory.path().join("file");
    std::fs::write(&file_path, b"x").unwrap();
    let file = rustix::fs::open(&file_path, OFlags::RDONLY, Mode::empty()).unwrap();
    assert!(refuse_special(&file, &path).is_ok());
}

#[test]
fn errno_names_cover_the_kernel_answers_conform_meets() {
    assert_eq!(KernelErrno(18).name(), "EXDEV");
    assert_eq!(KernelErrno(40).name(), "ELOOP");
    assert_eq!(KernelErrno(61).name(), "ENODATA");
    assert_eq!(KernelErrno(999).name(), "errno 999");
}
