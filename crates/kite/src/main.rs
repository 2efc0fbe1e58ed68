//! kite: the command-line virtual machine monitor.
//!
//! Exit status: the guest's debug-exit value `v` as `(v << 1) | 1`; 0 when
//! the guest powers off (or resets under --no-reboot, or the user quits with
//! Ctrl-A x); 1 when the guest or the engine fails; 2 for bad input (flags,
//! files, image formats), with one line on stderr saying what is wrong;
//! 6 when a thread makes a system call the seccomp sandbox forbids (the
//! line on stderr names the thread and the call; see docs/SANDBOX.md).

mod cli;
mod qmp_bridge;
mod terminal;

use std::sync::Arc;

use clap::Parser;
use kite_machine::snapshot::migration::IncomingError;
use kite_machine::snapshot::{IncomingSource, MigrationUri};
use kite_machine::{
    run_session_controlled, run_session_incoming, BlockConfig, DisplayConfig, FirmwareConfig,
    IdeDriveConfig, IdeDriveKind, Image, MachineConfig, MachineControl, NetConfig, SerialMode,
    ShutdownCause,
};

use cli::{Cli, Command, IncomingArg, NetSpec, RunArgs};
use kite_machine::gdb::GdbServer;

const STATUS_FAILURE: i32 = 1;
const STATUS_BAD_INPUT: i32 = 2;

fn main() {
    let status = real_main();
    std::process::exit(status);
}

fn real_main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return clap_error(e),
    };
    match cli.command {
        Command::Run(args) => run(args),
    }
}

/// Help and version go to stdout as usual; errors become one line.
fn clap_error(e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            0
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprintln!("kite: a command is needed: kite run [OPTIONS] (see kite --help)");
            STATUS_BAD_INPUT
        }
        _ => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("kite: {first} (see kite run --help)");
            STATUS_BAD_INPUT
        }
    }
}

/// The IDE slots: the CD-ROM on the secondary master (as QEMU's -cdrom),
/// IDE disks on the free slots in order.
fn ide_drives(args: &RunArgs) -> Result<[Option<IdeDriveConfig>; 4], String> {
    let mut slots: [Option<IdeDriveConfig>; 4] = Default::default();
    if let Some(iso) = &args.cdrom {
        std::fs::metadata(iso).map_err(|e| format!("--cdrom {}: {e}", iso.display()))?;
        slots[2] = Some(IdeDriveConfig {
            path: iso.clone(),
            kind: IdeDriveKind::Cdrom,
            readonly: true,
        });
    }
    for d in args.disk.iter().filter(|d| d.ide) {
        let free = slots
            .iter_mut()
            .find(|s| s.is_none())
            .ok_or("too many IDE drives: the two channels hold four")?;
        *free = Some(IdeDriveConfig {
            path: d.path.clone(),
            kind: IdeDriveKind::Disk,
            readonly: d.readonly,
        });
    }
    Ok(slots)
}

/// The screen as it stands, as a PNG (or PPM) file.
fn save_screenshot(
    display: &kite_display::Display,
    path: &std::path::Path,
    png: bool,
) -> Result<(), String> {
    let surface = display.snapshot();
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let out = std::io::BufWriter::new(file);
    if png {
        kite_display::encode_png(&surface, out)
    } else {
        kite_display::encode_ppm(&surface, out)
    }
    .map_err(|e| e.to_string())
}

fn bad_input(msg: impl std::fmt::Display) -> i32 {
    eprintln!("kite: {msg}");
    STATUS_BAD_INPUT
}

/// `--incoming defer`: wait for QMP's `migrate-incoming` to open a source;
/// None if the session was told to quit first.
fn wait_for_migrate_incoming(
    qmp: &qmp_bridge::Qmp,
    control: &MachineControl,
    limit: u64,
) -> Option<IncomingSource> {
    let rx = qmp.defer_incoming(limit);
    loop {
        match rx.recv_timeout(std::time::Duration::from_millis(50)) {
            Ok(source) => return Some(source),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !control.quit_requested() => {}
            Err(_) => return None,
        }
    }
}

fn run(args: RunArgs) -> i32 {
    if args.incoming == Some(IncomingArg::Defer) && args.qmp.is_empty() {
        return bad_input("--incoming defer waits for QMP's migrate-incoming: it needs --qmp");
    }
    if let Err(e) = kite_machine::EmuTier::check_env() {
        return bad_input(&e);
    }
    // First, before any thread starts: every thread then installs its own
    // filter, the main thread once the machine is built.
    if let Err(e) = kite_sandbox::enable(args.seccomp) {
        eprintln!("kite: {e} (--seccomp off runs without the sandbox)");
        return STATUS_FAILURE;
    }
    let net = match &args.net {
        None => None,
        Some(NetSpec::Tap(name)) => Some(NetConfig::Tap(name.clone())),
        Some(NetSpec::User(forwards)) => Some(NetConfig::User(forwards.clone())),
    };
    let kernel = match &args.kernel {
        Some(p) if p.as_os_str() == "builtin" => Some(Image::from_bytes(
            "built-in guest",
            kite_testkernels::hello(),
        )),
        Some(p) => match Image::read(p) {
            Ok(i) => Some(i),
            Err(e) => return bad_input(e),
        },
        None => None,
    };
    if kernel.is_none() && (args.initrd.is_some() || !args.cmdline.is_empty()) {
        return bad_input(
            "--initrd and --cmdline need --kernel (a firmware boot reads its kernel from the disk)",
        );
    }
    let ide = match ide_drives(&args) {
        Ok(d) => d,
        Err(e) => return bad_input(e),
    };
    let vnc = match args.display.as_deref() {
        None | Some("none") => None,
        Some(spec) if spec.starts_with("vnc=") => match kite_vnc::VncConfig::parse(spec) {
            Ok(c) => Some(c),
            Err(e) => return bad_input(format!("--display {spec}: {e}")),
        },
        Some(other) => {
            return bad_input(format!(
                "--display {other}: not a display (none, vnc=HOST:N, vnc=unix:PATH)"
            ))
        }
    };
    let display = (vnc.is_some() || args.screenshot_on_exit.is_some()).then(|| DisplayConfig {
        display: kite_display::Display::new(
            Box::new(kite_display::Blank),
            Arc::new(kite_display::NullInput),
        ),
        vram: args.vga_mem,
    });
    // Kept for the whole run: dropping it closes the listeners.
    let _vnc_server = match (vnc, &display) {
        (Some(cfg), Some(d)) => match kite_vnc::VncServer::start(cfg, d.display.clone()) {
            Ok(s) => Some(s),
            Err(e) => return bad_input(e),
        },
        _ => None,
    };
    let boot = args.boot.clone().unwrap_or_default();
    let firmware = FirmwareConfig {
        bios: args.bios.clone(),
        log: args.bios_log.clone(),
        order: boot.order,
        on_failure: boot.on_failure,
        menu: boot.menu,
        option_roms: args.option_rom.clone(),
    };
    let initrd = match args.initrd.as_deref().map(Image::read).transpose() {
        Ok(i) => i,
        Err(e) => return bad_input(e),
    };
    let config = MachineConfig {
        engine: args.engine.into(),
        memory: args.memory,
        cpus: args.cpus,
        kernel,
        firmware,
        initrd,
        cmdline: args.cmdline,
        serial: args.serial,
        no_reboot: args.no_reboot,
        ide,
        display,
        disks: args
            .disk
            .iter()
            .filter(|d| !d.ide)
            .map(|d| BlockConfig {
                path: d.path.clone(),
                readonly: d.readonly,
            })
            .collect(),
        // Every machine gets an entropy device: guests boot faster with it.
        rng: true,
        net,
    };

    let control = MachineControl::new();
    let gdb = match args.gdb.as_ref().map(|g| GdbServer::start(g, &control)) {
        Some(Err(e)) => return bad_input(e),
        Some(Ok(s)) => Some(s),
        None => None,
    };
    let qmp = match qmp_bridge::Qmp::start(&args.qmp, &config, &control) {
        Ok(q) => q,
        Err(e) => return bad_input(e),
    };
    let raw = if config.serial == SerialMode::Stdio {
        terminal::RawMode::enter()
    } else {
        None
    };
    // A stream cut by the network is not the user's file.
    let incoming_tcp = matches!(
        args.incoming,
        Some(IncomingArg::Uri(MigrationUri::Tcp(..)) | IncomingArg::Defer)
    );
    let result = match &args.incoming {
        None => run_session_controlled(&config, &control),
        Some(arg) => {
            control.set_incoming(true);
            let limit = kite_machine::snapshot::migration::incoming_limit(config.memory);
            let check = |b: &[u8]| kite_machine::run::check_stream(&config, b);
            let source = match arg {
                IncomingArg::Uri(uri) => {
                    IncomingSource::open(&uri.to_string(), limit, "--incoming")
                }
                IncomingArg::Defer => {
                    wait_for_migrate_incoming(&qmp, &control, limit).ok_or(IncomingError::Quit)
                }
            };
            let quit = || control.quit_requested();
            match source.and_then(|s| s.receive(limit, &check, &quit)) {
                Ok(incoming) => run_session_incoming(&config, &control, &incoming),
                Err(IncomingError::Quit) => {
                    control.end(ShutdownCause::HostQmpQuit);
                    drop(raw);
                    qmp.finish();
                    return 0;
                }
                Err(e) => {
                    drop(raw);
                    qmp.finish();
                    eprintln!("kite: {e}");
                    return match e {
                        IncomingError::Input(_) => STATUS_BAD_INPUT,
                        IncomingError::Stream(_) | IncomingError::Quit => STATUS_FAILURE,
                    };
                }
            }
        }
    };
    drop(raw);
    qmp.finish();
    let status = match &result {
        Ok(outcome) => outcome.status(),
        Err(e) if e.is_user_error() => STATUS_BAD_INPUT,
        Err(_) => STATUS_FAILURE,
    };
    if let Some(g) = gdb {
        g.finish(status);
    }
    if let (Some(path), Some(d)) = (&args.screenshot_on_exit, &config.display) {
        if let Err(e) = save_screenshot(&d.display, path, true) {
            eprintln!("kite: --screenshot-on-exit {}: {e}", path.display());
        }
    }

    match result {
        Ok(outcome) => {
            if let Some(m) = outcome.message() {
                eprintln!("kite: {m}");
            }
            outcome.status()
        }
        Err(e) => {
            eprintln!("kite: {e}");
            if e.is_user_error() && !incoming_tcp {
                STATUS_BAD_INPUT
            } else {
                STATUS_FAILURE
            }
        }
    }
}
