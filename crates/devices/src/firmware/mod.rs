//! What firmware reads from the board: QEMU's fw_cfg interface (the items
//! and files SeaBIOS asks for), its table-loader script format, and the
//! firmware debug console port.

pub mod debug_console;
pub mod fw_cfg;
pub mod table_loader;

pub use debug_console::DebugConsole;
pub use fw_cfg::{FwCfg, FwCfgError, FwCfgItem};
pub use table_loader::{LoaderZone, TableLoader};
