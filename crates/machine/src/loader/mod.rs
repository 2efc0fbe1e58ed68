//! Kernel loaders: each puts an image into guest memory and says how the boot
//! vCPU starts. `load_kernel` tells the formats apart by their headers:
//! Multiboot v1 first (its header may sit inside an ELF file), then Linux
//! (bzImage or vmlinux ELF) through `load_linux_hook`.

pub mod multiboot;

use std::path::Path;

pub mod linux;

use kite_hypervisor::{Regs, Sregs};
use thiserror::Error;
use vm_memory::GuestMemoryMmap;

use crate::memory::MemoryLayout;

/// The state the boot vCPU starts in, once a kernel is loaded.
#[derive(Debug, Clone, Default)]
pub struct BootState {
    pub regs: Regs,
    pub sregs: Sregs,
}

/// Why a kernel or initrd could not be loaded. Messages name the file's fault
/// so the user can act on it.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("{0}: not a kernel image Kite knows (multiboot, Linux bzImage or ELF)")]
    UnknownFormat(String),
    #[error("{what}: image is truncated or corrupt: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("{what} does not fit in guest memory: {detail}")]
    TooLarge { what: String, detail: String },
    #[error("{what}: {detail}")]
    Unsupported { what: String, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The largest kernel or initrd file Kite reads: everything is placed below 4 GiB.
pub const MAX_IMAGE_SIZE: u64 = 4 << 30;

/// A file's name (for messages) and contents.
#[derive(Debug, Clone)]
pub struct Image {
    pub name: String,
    pub bytes: Vec<u8>,
}

impl Image {
    /// Read `path` whole. An empty file is refused here, so no loader sees one.
    pub fn read(path: &Path) -> Result<Image, LoadError> {
        let name = path.display().to_string();
        let io = |source| LoadError::Io {
            path: name.clone(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if !meta.is_file() {
            return Err(LoadError::Unsupported {
                what: name,
                detail: "not a regular file".into(),
            });
        }
        if meta.len() > MAX_IMAGE_SIZE {
            return Err(LoadError::TooLarge {
                what: name,
                detail: format!("{} bytes; images are loaded below 4 GiB", meta.len()),
            });
        }
        let bytes = std::fs::read(path).map_err(io)?;
        if bytes.is_empty() {
            return Err(LoadError::Corrupt {
                what: name,
                detail: "the file is empty".into(),
            });
        }
        Ok(Image { name, bytes })
    }

    pub fn from_bytes(name: impl Into<String>, bytes: Vec<u8>) -> Image {
        Image {
            name: name.into(),
            bytes,
        }
    }
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct BootSpec<'a> {
    pub kernel: &'a Image,
    pub initrd: Option<&'a Image>,
    pub cmdline: &'a str,
    /// Where the board put the ACPI RSDP, if it built ACPI tables.
    pub rsdp_address: Option<u64>,
}

/// Load `spec` into `mem` by the kernel's format.
pub fn load_kernel(
    mem: &GuestMemoryMmap,
    layout: &MemoryLayout,
    spec: &BootSpec<'_>,
) -> Result<BootState, LoadError> {
    if let Some(header) = multiboot::find_header(&spec.kernel.bytes) {
        return multiboot::load(mem, layout, spec, &header);
    }
    load_linux_hook(mem, layout, spec)
}

/// The Linux loader's entry point (bzImage and vmlinux ELF).
pub fn load_linux_hook(
    mem: &GuestMemoryMmap,
    layout: &MemoryLayout,
    spec: &BootSpec<'_>,
) -> Result<BootState, LoadError> {
    if !linux::is_linux_image(&spec.kernel.bytes) {
        return Err(LoadError::UnknownFormat(spec.kernel.name.clone()));
    }
    let mut params = linux::LinuxBootParams::new(linux::pc_e820_map(&layout.ram_ranges()));
    params.kernel_name = spec.kernel.name.clone();
    if let Some(i) = spec.initrd {
        params.initrd_name = i.name.clone();
    }
    params.rsdp_address = spec.rsdp_address;
    linux::load_linux(
        mem,
        &spec.kernel.bytes,
        spec.initrd.map(|i| i.bytes.as_slice()),
        spec.cmdline,
        &params,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::create_guest_memory;

    #[test]
    fn junk_is_unknown_format() {
        let layout = MemoryLayout::new(16 << 20).unwrap();
        let mem = create_guest_memory(&layout).unwrap();
        let junk = Image::from_bytes("junk.bin", vec![0x5a; 10_000]);
        let err = load_kernel(
            &mem,
            &layout,
            &BootSpec {
                kernel: &junk,
                initrd: None,
                cmdline: "",
                rsdp_address: None,
            },
        )
        .unwrap_err();
        assert!(matches!(err, LoadError::UnknownFormat(_)));
        assert!(err.to_string().starts_with("junk.bin: not a kernel image"));
    }

    #[test]
    fn missing_and_empty_files_are_clear_errors() {
        let err = Image::read(Path::new("/nonexistent/kite-kernel")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/kite-kernel"),
            "{err}"
        );
        let dir = std::env::temp_dir().join(format!("kite-empty-{}", std::process::id()));
        std::fs::write(&dir, b"").unwrap();
        let err = Image::read(&dir).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        std::fs::remove_file(&dir).unwrap();
        // Devices and directories are refused without reading them.
        for odd in ["/dev/zero", "/tmp"] {
            let err = Image::read(Path::new(odd)).unwrap_err();
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
    }
}
