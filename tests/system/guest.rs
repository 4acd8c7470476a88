//! The catalogue's Linux guest (issue 14's first image): built by `scripts/guest-image.sh` from
//! Debian's packages, booted under QEMU with TCG, it answers on its address with its instance id,
//! its boot count and a counter kept on its own disk — and both survive a reboot.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The image, built when missing (the script is a no-op once it is there).
fn image() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/images/linux-busybox");
    let built = Command::new(root.join("scripts/guest-image.sh"))
        .arg(&dir)
        .status()
        .expect("run scripts/guest-image.sh");
    assert!(built.success(), "the guest image builds");
    dir
}

/// A running guest, killed when dropped.
struct Guest(Child);

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A guest booted on `disk`, its port 7000 forwarded to 127.0.0.1:`port`; returned once its
/// serial console says it is ready.
fn boot(image: &Path, disk: &Path, id: &str, port: u16) -> Guest {
    let mut qemu = Command::new("qemu-system-x86_64")
        .args([
            "-accel", "tcg", "-m", "128M", "-display", "none", "-serial", "stdio",
        ])
        .args(["-monitor", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(image.join("vmlinuz"))
        .arg("-initrd")
        .arg(image.join("initramfs.cpio.gz"))
        .args([
            "-append",
            &format!("console=ttyS0 quiet panic=-1 sf.id={id} sf.ip=10.0.2.15/24 sf.gw=10.0.2.2"),
        ])
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", disk.display()))
        .args([
            "-netdev",
            &format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-10.0.2.15:7000"),
            "-device",
            "virtio-net-pci,netdev=n0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("qemu-system-x86_64 (./test.sh installs qemu-system-x86)");
    let stdout = qemu.stdout.take().expect("serial console");
    let qemu = Guest(qemu);
    let mut console = BufReader::new(stdout);
    let mut seen = Vec::new();
    loop {
        let mut line = Vec::new();
        match console.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => panic!(
                "the guest stopped before it was ready: {}",
                String::from_utf8_lossy(&seen)
            ),
            Ok(_) => {}
        }
        seen.extend_from_slice(&line);
        if String::from_utf8_lossy(&line).contains("streamfleet guest ready") {
            break;
        }
    }
    std::thread::spawn(move || {
        let mut rest = Vec::new();
        let _ = console.read_to_end(&mut rest);
    });
    qemu
}

/// One answer of the guest's app.
fn ask(port: u16) -> String {
    let mut answer = String::new();
    std::net::TcpStream::connect(("127.0.0.1", port))
        .expect("the guest's port")
        .read_to_string(&mut answer)
        .expect("an answer");
    answer.trim().to_string()
}

#[test]
fn the_linux_guest_boots_under_qemu_answers_with_its_id_and_keeps_its_disk_across_boots() {
    let image = image();
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("vda.raw");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(1 << 20))
        .expect("a 1 MiB raw disk");
    let port = crate::harness::free_port();
    let guest = boot(&image, &disk, "i-guest", port);
    assert_eq!(
        ask(port),
        "id=i-guest boots=1 counter=1 disks=vda nics=eth0"
    );
    assert_eq!(
        ask(port),
        "id=i-guest boots=1 counter=2 disks=vda nics=eth0"
    );
    drop(guest);

    // The same disk again: one boot more, the counter where it was.
    let port = crate::harness::free_port();
    let _guest = boot(&image, &disk, "i-guest", port);
    assert_eq!(
        ask(port),
        "id=i-guest boots=2 counter=3 disks=vda nics=eth0"
    );
}

/// The catalogue as a service sees it: `streamfleet instance images --json`.
#[test]
fn the_image_catalogue_lists_each_image_with_its_os_and_hypervisors() {
    let out = Command::new(env!("CARGO_BIN_EXE_streamfleet"))
        .args(["instance", "images", "--json"])
        .output()
        .expect("streamfleet instance images");
    assert!(out.status.success());
    let images: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let linux = images
        .as_array()
        .and_then(|all| all.iter().find(|i| i["name"] == "linux-busybox"))
        .unwrap_or_else(|| panic!("linux-busybox listed: {images}"));
    assert_eq!(
        linux,
        &serde_json::json!({ "name": "linux-busybox", "os": "linux", "hypervisors": ["qemu", "crun"] })
    );
    assert!(
        images
            .as_array()
            .is_some_and(|all| all.iter().all(|i| i["name"].is_string()
                && i["os"].is_string()
                && i["hypervisors"].as_array().is_some_and(|h| !h.is_empty()))),
        "{images}"
    );
}

/// KVM is used on evidence only: the probe boots the image under KVM and chooses it only when
/// the guest says it is ready; otherwise TCG, saying why (on these machines `/dev/kvm` opens but
/// nested guests hang after the bootloader). The answer is kept for the machine's boot.
#[tokio::test]
async fn the_kvm_probe_chooses_kvm_only_when_a_probe_guest_boots_with_it() {
    use streamfleet_compute::accel::{Accel, PROBE_TIMEOUT, probe};
    let image = image();
    let dir = tempfile::tempdir().expect("tempdir");
    let started = std::time::Instant::now();
    let probed = probe(&image, &dir.path().join("accel")).await;
    assert!(
        started.elapsed() < PROBE_TIMEOUT + std::time::Duration::from_secs(10),
        "the probe gives up in time"
    );
    let kvm_opens = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    match probed.accel {
        Accel::Kvm => {
            assert!(kvm_opens);
            assert_eq!(probed.why, "a probe guest booted under KVM");
        }
        Accel::Tcg if !kvm_opens => assert_eq!(probed.why, "no usable /dev/kvm"),
        Accel::Tcg => assert!(
            probed.why.contains("did not boot under KVM") || probed.why.contains("refused"),
            "{}",
            probed.why
        ),
    }
    // Asked again this boot: the same answer at once.
    let again = std::time::Instant::now();
    let cached = probe(&image, &dir.path().join("accel")).await;
    assert!(again.elapsed() < std::time::Duration::from_secs(1));
    assert_eq!(cached.accel, probed.accel);
    assert!(
        cached.why.ends_with("(probed earlier this boot)"),
        "{}",
        cached.why
    );
    // Nothing to probe with: TCG, saying so.
    let nothing = probe(&dir.path().join("no-image"), &dir.path().join("accel2")).await;
    assert_eq!(nothing.accel, Accel::Tcg);
}
