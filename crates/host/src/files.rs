//! Opening what a grant holds for reading, safely: a FIFO, socket or device
//! is refused by name before anything waits on it.

use std::path::Path;

use cap_std::fs::{Dir, OpenOptions};

/// Open a file for reading only if it is a regular file. A FIFO opened for
/// reading blocks until a writer comes (for ever), and a device or socket is
/// no file to hash, copy or unpack: such a path is refused before anything
/// waits on it. (Opened non-blocking, checked by fstat, then made blocking.)
pub fn open_regular(dir: &Dir, path: &Path, shown: &str) -> std::io::Result<std::fs::File> {
    use cap_std::fs::OpenOptionsExt as _;
    use std::os::unix::fs::MetadataExt as _;
    let mut opts = OpenOptions::new();
    opts.read(true);
    opts.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    let file = dir.open_with(path, &opts)?.into_std();
    let md = file.metadata()?;
    if !md.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{shown} is {}, not a regular file; mend never reads special files",
                special_kind(md.mode())
            ),
        ));
    }
    let flags = rustix::fs::fcntl_getfl(&file)?;
    rustix::fs::fcntl_setfl(&file, flags - rustix::fs::OFlags::NONBLOCK)?;
    Ok(file)
}

/// "a FIFO", "a socket", ... (from `st_mode`), for messages.
pub fn special_kind(mode: u32) -> &'static str {
    use rustix::fs::FileType as T;
    match T::from_raw_mode(mode) {
        T::Fifo => "a FIFO (named pipe)",
        T::Socket => "a socket",
        T::BlockDevice => "a block device",
        T::CharacterDevice => "a character device",
        T::Directory => "a directory",
        T::Symlink => "a symlink",
        _ => "a special file",
    }
}
