//! The command line: `kite run` and its flags, with the parsers for sizes,
//! disks, networks and serial modes.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use kite_machine::{BootDevice, BootFailure, EngineChoice, HostForward, SerialMode};

#[derive(Debug, Parser)]
#[command(name = "kite", version, about = "Kite: a virtual machine monitor")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a virtual machine: a PC that runs its firmware (SeaBIOS) and
    /// boots from its disks or CD-ROM, or, with --kernel, a kernel Kite
    /// loads itself (`--kernel builtin`: a small guest that greets on the
    /// serial console and exits with status 33).
    Run(RunArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    /// kvm when the CPU has VT-x/AMD-V and /dev/kvm opens, else emu.
    Auto,
    /// The software x86 engine.
    Emu,
    /// The host's /dev/kvm.
    Kvm,
}

impl From<EngineArg> for EngineChoice {
    fn from(e: EngineArg) -> Self {
        match e {
            EngineArg::Auto => EngineChoice::Auto,
            EngineArg::Emu => EngineChoice::Emu,
            EngineArg::Kvm => EngineChoice::Kvm,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Which engine runs the guest.
    #[arg(long, value_enum, default_value = "auto")]
    pub engine: EngineArg,
    /// Guest RAM: a number with K, M, G or T suffix (no suffix: MiB).
    #[arg(long, default_value = "512M", value_parser = parse_memory, value_name = "SIZE")]
    pub memory: u64,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=254), value_name = "N")]
    pub cpus: u32,
    /// Kernel image to boot directly, without firmware (Multiboot, Linux
    /// bzImage or ELF vmlinux), or `builtin` for Kite's built-in guest.
    #[arg(long, value_name = "PATH|builtin")]
    pub kernel: Option<PathBuf>,
    /// Firmware image for a boot without --kernel (a BIOS: a multiple of
    /// 64 KiB, mapped at the top of 4 GiB).
    #[arg(long, value_name = "FILE", default_value = kite_machine::firmware::DEFAULT_BIOS)]
    pub bios: PathBuf,
    /// An option ROM for the firmware to run (QEMU's -option-rom);
    /// repeatable.
    #[arg(long, value_name = "FILE")]
    pub option_rom: Vec<PathBuf>,
    /// Write the firmware's debug output (port 0x402) to FILE.
    #[arg(long, value_name = "FILE")]
    pub bios_log: Option<PathBuf>,
    /// Boot order for the firmware, in QEMU's letters: c (hard disk), d
    /// (CD-ROM), n (network), e.g. `d` or `order=dc`; `,menu=on` offers
    /// the boot menu; `,fail=wait` keeps retrying when nothing boots
    /// (default `fail=exit`: exit with status 4).
    #[arg(long, value_parser = parse_boot, value_name = "ORDER[,menu=on][,fail=exit|wait]")]
    pub boot: Option<BootSpec>,
    /// Initial ramdisk (the first Multiboot module, or Linux's initrd).
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, default_value = "", value_name = "STRING")]
    pub cmdline: String,
    /// A raw disk image: a virtio block device by default (the guest's
    /// /dev/vda, vdb, ... in order), or an ATA disk on the IDE controller
    /// with `,if=ide` (primary master, primary slave, then secondary
    /// slave); repeatable. Locked against other writers.
    #[arg(long, value_parser = parse_disk, value_name = "PATH[,readonly][,if=virtio|ide]")]
    pub disk: Vec<DiskSpec>,
    /// An ISO image as an ATAPI CD-ROM on the IDE secondary master (as
    /// QEMU's -cdrom).
    #[arg(long, value_name = "FILE")]
    pub cdrom: Option<PathBuf>,
    /// A virtio network device on a host tap interface (tap=NAME) or on
    /// user-mode networking (user: guest 10.0.2.15/24, gateway 10.0.2.2 =
    /// host loopback, DNS 10.0.2.3, DHCP; add
    /// ,hostfwd=tcp:[HOSTADDR]:HOSTPORT-:GUESTPORT to forward a host port,
    /// HOSTADDR defaulting to 127.0.0.1).
    #[arg(long, value_parser = parse_net, value_name = "user[,hostfwd=...]|tap=NAME")]
    pub net: Option<NetSpec>,
    /// Where COM1 goes: stdio (Ctrl-A x quits), none, or file=PATH.
    #[arg(long, default_value = "stdio", value_parser = parse_serial, value_name = "stdio|none|file=PATH")]
    pub serial: SerialMode,
    /// The screen: `none` (default: headless, the firmware's console on
    /// COM1) or `vnc=HOST:N` (a standard VGA and a virtio tablet, served
    /// by VNC on port 5900+N; also `vnc=unix:PATH`, and
    /// `,websocket=PORT|on` for browsers (noVNC), `,password=on` with the
    /// password in $KITE_VNC_PASSWORD or `,password-file=PATH`).
    #[arg(long, value_name = "none|vnc=HOST:N[,websocket=PORT][,password=on]")]
    pub display: Option<String>,
    /// When the machine stops, save its screen as a PNG at FILE (gives the
    /// machine a VGA even without --display).
    #[arg(long, value_name = "FILE.png")]
    pub screenshot_on_exit: Option<PathBuf>,
    /// Video memory of the VGA, default 16M (a power of two, 4M to 256M).
    #[arg(long, default_value = "16M", value_parser = parse_memory, value_name = "SIZE")]
    pub vga_mem: u64,
    /// Exit instead of rebooting when the guest resets or triple-faults.
    #[arg(long)]
    pub no_reboot: bool,
    /// A QMP monitor socket (repeatable): unix:PATH or tcp:HOST:PORT, with
    /// QEMU's ,server / ,wait=on|off / ,nowait. The guest starts at once
    /// unless wait=on.
    #[arg(long, value_name = "unix:PATH|tcp:HOST:PORT[,server=on][,wait=off]")]
    pub qmp: Vec<kite_qmp::ListenAddress>,
    /// Start from a snapshot instead of booting: file:PATH (written by QMP
    /// `migrate`), tcp:HOST:PORT to wait for one migration stream, or defer
    /// to wait for QMP `migrate-incoming` to name one (needs --qmp). The
    /// other options must describe the same machine.
    #[arg(
        long,
        value_parser = parse_incoming,
        value_name = "file:PATH|tcp:HOST:PORT|defer"
    )]
    pub incoming: Option<IncomingArg>,
    /// Serve the GDB remote protocol here (as QEMU's -gdb); with wait=on
    /// the guest starts stopped until gdb attaches and continues (QEMU's -S).
    #[arg(long, value_name = "tcp:HOST:PORT[,wait=on]", value_parser = parse_gdb)]
    pub gdb: Option<kite_machine::gdb::GdbConfig>,
    /// The seccomp sandbox: on (a forbidden system call is reported and
    /// ends Kite with status 6), log (allowed, logged by the kernel), off.
    #[arg(long, default_value = "on", value_name = "on|off|log")]
    pub seccomp: kite_sandbox::Mode,
}

/// `--incoming`: a snapshot's URI now, or one QMP will name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncomingArg {
    Uri(kite_machine::snapshot::MigrationUri),
    Defer,
}

fn parse_incoming(s: &str) -> Result<IncomingArg, String> {
    if s == "defer" {
        return Ok(IncomingArg::Defer);
    }
    kite_machine::snapshot::MigrationUri::parse(s).map(IncomingArg::Uri)
}

fn parse_gdb(s: &str) -> Result<kite_machine::gdb::GdbConfig, String> {
    kite_machine::gdb::GdbConfig::parse(s).map_err(|e| e.to_string())
}

/// `--boot`: order, menu and what to do when nothing boots.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BootSpec {
    pub order: Vec<BootDevice>,
    pub menu: bool,
    pub on_failure: BootFailure,
}

/// `cd`, `order=dc,menu=on`, `c,fail=wait`.
pub fn parse_boot(s: &str) -> Result<BootSpec, String> {
    let mut spec = BootSpec::default();
    let letters = |o: &str| -> Result<Vec<BootDevice>, String> {
        let mut v = Vec::new();
        for c in o.chars() {
            let d = match c {
                'c' => BootDevice::Disk,
                'd' => BootDevice::Cdrom,
                'n' => BootDevice::Network,
                _ => {
                    return Err(format!(
                        "'{c}' in boot order '{o}' is not a device (c: disk, d: CD-ROM, n: network)"
                    ))
                }
            };
            if v.contains(&d) {
                return Err(format!("boot order '{o}' names '{c}' twice"));
            }
            v.push(d);
        }
        if v.is_empty() {
            return Err("the boot order is empty (use c, d, n)".into());
        }
        Ok(v)
    };
    for (i, part) in s.split(',').enumerate() {
        match part.split_once('=') {
            None if i == 0 => spec.order = letters(part)?,
            Some(("order", o)) => spec.order = letters(o)?,
            Some(("menu", v)) => spec.menu = on_off(v)?,
            Some(("fail", "exit")) => spec.on_failure = BootFailure::Exit,
            Some(("fail", "wait")) => spec.on_failure = BootFailure::Wait,
            _ => {
                return Err(format!(
                "'{part}' is not a boot option (ORDER, order=ORDER, menu=on|off, fail=exit|wait)"
            ))
            }
        }
    }
    Ok(spec)
}

fn on_off(v: &str) -> Result<bool, String> {
    match v {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("'{v}' is not on or off")),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    pub path: PathBuf,
    pub readonly: bool,
    /// On the IDE controller (`if=ide`) rather than virtio-blk.
    pub ide: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetSpec {
    User(Vec<HostForward>),
    Tap(String),
}

/// `hostfwd=tcp:[ADDR]:HOSTPORT-[10.0.2.15]:GUESTPORT`.
fn parse_hostfwd(s: &str) -> Result<HostForward, String> {
    let bad = || {
        format!(
            "'{s}' is not a forward (use hostfwd=tcp:[HOSTADDR]:HOSTPORT-:GUESTPORT, \
             e.g. hostfwd=tcp:127.0.0.1:2222-:22)"
        )
    };
    let spec = s
        .strip_prefix("hostfwd=")
        .and_then(|r| r.strip_prefix("tcp:"))
        .ok_or_else(bad)?;
    let (host, guest) = spec.split_once('-').ok_or_else(bad)?;
    let (addr, hport) = host.rsplit_once(':').ok_or_else(bad)?;
    let addr: Ipv4Addr = if addr.is_empty() {
        Ipv4Addr::LOCALHOST
    } else {
        addr.parse().map_err(|_| bad())?
    };
    let hport: u16 = hport.parse().map_err(|_| bad())?;
    let (gaddr, gport) = guest.rsplit_once(':').ok_or_else(bad)?;
    if !(gaddr.is_empty() || gaddr == "10.0.2.15") {
        return Err(format!("{}: the guest is 10.0.2.15", bad()));
    }
    let guest_port: u16 = gport.parse().ok().filter(|&p| p != 0).ok_or_else(bad)?;
    Ok(HostForward {
        host: SocketAddr::V4(SocketAddrV4::new(addr, hport)),
        guest_port,
    })
}

/// `512M`, `2G`, `65536K`, `1T`, `4096` (MiB); an optional `B`/`iB` after
/// the suffix. Sizes are binary (K = 1024).
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let bad = || format!("'{s}' is not a size (examples: 512M, 2G, 65536K)");
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(bad()),
            };
            (&t[..i], shift)
        }
        _ => (t, 20),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("'{s}' is too large"))
}

/// `PATH` or `PATH,readonly`; the file must exist.
pub fn parse_disk(s: &str) -> Result<DiskSpec, String> {
    let mut parts = s.split(',');
    let path = parts.next().unwrap_or_default();
    if path.is_empty() {
        return Err("a disk needs a path: --disk PATH[,readonly]".into());
    }
    let mut readonly = false;
    let mut ide = false;
    for opt in parts {
        match opt {
            "readonly" | "ro" => readonly = true,
            "if=ide" => ide = true,
            "if=virtio" => ide = false,
            other => {
                return Err(format!(
                    "unknown disk option '{other}' (known: readonly, if=virtio, if=ide)"
                ))
            }
        }
    }
    let path = PathBuf::from(path);
    std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(DiskSpec {
        path,
        readonly,
        ide,
    })
}

/// `user[,hostfwd=tcp:[ADDR]:HOSTPORT-[10.0.2.15]:GUESTPORT]...` or
/// `tap=NAME` (NAME at most 15 bytes, as Linux allows).
pub fn parse_net(s: &str) -> Result<NetSpec, String> {
    if let Some(rest) = s.strip_prefix("user,") {
        return rest
            .split(',')
            .map(parse_hostfwd)
            .collect::<Result<Vec<_>, _>>()
            .map(NetSpec::User);
    }
    match s.split_once('=') {
        None if s == "user" => Ok(NetSpec::User(Vec::new())),
        Some(("tap", name)) if !name.is_empty() && name.len() <= 15 && !name.contains('/') => {
            Ok(NetSpec::Tap(name.to_string()))
        }
        Some(("tap", _)) => Err("tap=NAME needs an interface name of 1 to 15 bytes".into()),
        _ => Err(format!("'{s}' is not a network (use user or tap=NAME)")),
    }
}

/// `stdio`, `none` or `file=PATH`.
pub fn parse_serial(s: &str) -> Result<SerialMode, String> {
    match s.split_once('=') {
        None if s == "stdio" => Ok(SerialMode::Stdio),
        None if s == "none" => Ok(SerialMode::None),
        Some(("file", p)) if !p.is_empty() => Ok(SerialMode::File(PathBuf::from(p))),
        Some(("file", _)) => Err("file=PATH needs a path".into()),
        _ => Err(format!(
            "'{s}' is not a serial mode (use stdio, none or file=PATH)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512M"), Ok(512 << 20));
        assert_eq!(parse_memory("2G"), Ok(2 << 30));
        assert_eq!(parse_memory("2g"), Ok(2 << 30));
        assert_eq!(parse_memory("65536K"), Ok(64 << 20));
        assert_eq!(parse_memory("1T"), Ok(1 << 40));
        assert_eq!(parse_memory("256"), Ok(256 << 20));
        assert_eq!(parse_memory("512MiB"), Ok(512 << 20));
        assert_eq!(parse_memory("1GB"), Ok(1 << 30));
        for bad in [
            "",
            "M",
            "12Q",
            "-1G",
            "1.5G",
            "G1",
            "99999999999999999999T",
            "1 G",
        ] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
        assert!(parse_memory("20000000T").unwrap_err().contains("too large"));
    }

    #[test]
    fn boot_orders() {
        let b = parse_boot("order=dc,menu=on,fail=wait").unwrap();
        assert_eq!(b.order, vec![BootDevice::Cdrom, BootDevice::Disk]);
        assert!(b.menu);
        assert_eq!(b.on_failure, BootFailure::Wait);
        assert_eq!(parse_boot("c").unwrap().order, vec![BootDevice::Disk]);
        for bad in ["", "x", "cc", "menu=on,d", "c,fail=never", "order="] {
            assert!(parse_boot(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn disks() {
        let me = std::env::current_exe().unwrap();
        let p = me.display().to_string();
        assert_eq!(
            parse_disk(&p),
            Ok(DiskSpec {
                path: me.clone(),
                readonly: false,
                ide: false,
            })
        );
        assert_eq!(
            parse_disk(&format!("{p},if=ide,ro")),
            Ok(DiskSpec {
                path: me.clone(),
                readonly: true,
                ide: true,
            })
        );
        assert!(parse_disk(&format!("{p},if=scsi")).is_err());
        assert_eq!(
            parse_disk(&format!("{p},readonly")),
            Ok(DiskSpec {
                path: me,
                readonly: true,
                ide: false,
            })
        );
        assert!(parse_disk(&format!("{p},cache=none"))
            .unwrap_err()
            .contains("cache=none"));
        assert!(parse_disk("/nonexistent/disk.img")
            .unwrap_err()
            .contains("/nonexistent/disk.img"));
        assert!(parse_disk(",readonly").is_err());
    }

    #[test]
    fn nets_and_serials() {
        assert_eq!(parse_net("user"), Ok(NetSpec::User(Vec::new())));
        assert_eq!(
            parse_net("user,hostfwd=tcp::2222-:22,hostfwd=tcp:0.0.0.0:8080-10.0.2.15:80"),
            Ok(NetSpec::User(vec![
                HostForward {
                    host: "127.0.0.1:2222".parse().unwrap(),
                    guest_port: 22
                },
                HostForward {
                    host: "0.0.0.0:8080".parse().unwrap(),
                    guest_port: 80
                },
            ]))
        );
        for bad in [
            "user,",
            "user,hostfwd=udp::1-:2",
            "user,hostfwd=tcp::1:2",
            "user,hostfwd=tcp::1-:0",
            "user,hostfwd=tcp:x:1-:2",
            "user,hostfwd=tcp::1-10.0.2.9:2",
            "user,hostfwd=tcp::70000-:2",
        ] {
            assert!(parse_net(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_net("tap=tap0"), Ok(NetSpec::Tap("tap0".into())));
        for bad in ["tap=", "tap=abcdefghijklmnop", "bridge", "user=1", "tap"] {
            assert!(parse_net(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_serial("stdio"), Ok(SerialMode::Stdio));
        assert_eq!(parse_serial("none"), Ok(SerialMode::None));
        assert_eq!(
            parse_serial("file=/tmp/x"),
            Ok(SerialMode::File("/tmp/x".into()))
        );
        for bad in ["file=", "pty", "tcp=1"] {
            assert!(parse_serial(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults() {
        let cli = Cli::try_parse_from(["kite", "run"]).unwrap();
        let Command::Run(a) = cli.command;
        assert_eq!(a.memory, 512 << 20);
        assert_eq!(a.cpus, 1);
        assert_eq!(a.engine, EngineArg::Auto);
        assert_eq!(a.serial, SerialMode::Stdio);
        assert!(!a.no_reboot && a.kernel.is_none() && a.disk.is_empty() && a.net.is_none());
        assert!(Cli::try_parse_from(["kite", "run", "--cpus", "0"]).is_err());
        assert!(Cli::try_parse_from(["kite", "run", "--engine", "xen"]).is_err());
        let cli = Cli::try_parse_from([
            "kite",
            "run",
            "--engine",
            "kvm",
            "--memory",
            "1G",
            "--cpus",
            "2",
            "--cmdline",
            "a b",
            "--serial",
            "none",
            "--no-reboot",
        ])
        .unwrap();
        let Command::Run(a) = cli.command;
        assert_eq!(
            (a.engine, a.memory, a.cpus, a.cmdline.as_str()),
            (EngineArg::Kvm, 1 << 30, 2, "a b")
        );
        assert!(a.no_reboot);
    }

    #[test]
    fn the_sandbox_is_on_unless_asked_otherwise() {
        let mode = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).ok()?;
            let Command::Run(a) = cli.command;
            Some(a.seccomp)
        };
        use kite_sandbox::Mode;
        assert_eq!(mode(&["kite", "run"]), Some(Mode::On));
        assert_eq!(mode(&["kite", "run", "--seccomp", "off"]), Some(Mode::Off));
        assert_eq!(mode(&["kite", "run", "--seccomp", "log"]), Some(Mode::Log));
        assert_eq!(mode(&["kite", "run", "--seccomp", "strict"]), None);
    }
}
