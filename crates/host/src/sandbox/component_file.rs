//! Reading a step's `.wasm` file: bounded, and with a reason that names the
//! file and what is wrong with it. Shared by runbooks (`uses = "x.wasm"`) and
//! `mend step inspect` / `mend step build`.

use std::io::Read as _;
use std::path::Path;

/// The largest step component mend reads. Bundled steps are 0.1 to 0.5 MB;
/// a file this big is the wrong file, or a decompression bomb for the
/// compiler, and it is refused before it is read whole.
pub const MAX_COMPONENT_BYTES: u64 = 64 << 20;

/// Read a component file whole, after checking that it is a regular file no
/// larger than [`MAX_COMPONENT_BYTES`]. The error names the file.
pub fn read_component(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let md = file
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !md.is_file() {
        return Err(format!(
            "{shown} is not a regular file; `uses` must name a step's .wasm file"
        ));
    }
    if md.len() > MAX_COMPONENT_BYTES {
        return Err(too_big(path, md.len()));
    }
    let mut bytes = Vec::with_capacity(md.len() as usize);
    // `take`: a file that grows while it is read is still bounded.
    file.take(MAX_COMPONENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_COMPONENT_BYTES {
        return Err(too_big(path, bytes.len() as u64));
    }
    Ok(bytes)
}

fn too_big(path: &Path, len: u64) -> String {
    format!(
        "{} is {}, more than the {} a step component may be; a step is usually under 1 MB: is this the right file?",
        path.display(),
        mend_human::human_bytes(len),
        mend_human::human_bytes(MAX_COMPONENT_BYTES)
    )
}

/// What is wrong with bytes that should be a component, when it can be told
/// without compiling them: not WebAssembly at all, or a core module.
pub fn shape_problem(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() {
        return Some("the file is empty; build the step for `wasm32-wasip2`".into());
    }
    if !bytes.starts_with(b"\0asm") {
        let head: String = bytes
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        return Some(format!(
            "not WebAssembly (it starts with bytes {head}, not `\\0asm`); `uses` must name a step's .wasm file"
        ));
    }
    if bytes.get(4..8) == Some(&[1, 0, 0, 0]) {
        return Some(
            "this is a core WebAssembly module, not a component; build the step for `wasm32-wasip2`"
                .into(),
        );
    }
    None
}
