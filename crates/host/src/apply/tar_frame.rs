//! Tar headers written by mend for the archive's framing thread: each
//! 512-byte POSIX ustar header built on the stack (octal fields without
//! `format!`, the checksum summed once) and written straight into the
//! output buffer. The `tar` crate did the same work with a `format!` per
//! field and a check of every path's components, which was most of the
//! framing thread's time on a tree of small files.
//!
//! What ustar cannot hold goes in a PAX extended header (`x`) before the
//! entry, as GNU tar (`--format=posix`) and bsdtar write it: a path longer
//! than the 155/100 prefix/name split, a link target over 100 bytes, user
//! and group names over 31 bytes, ids over 7 octal digits, a size over 11
//! (8 GiB), an mtime before 1970 or after 2242, and extended attributes as
//! `SCHILY.xattr.*`. A name that is not UTF-8 is kept as its bytes: in the
//! ustar fields when it fits (as GNU tar's own format does), else in the
//! PAX record with `hdrcharset=BINARY` (POSIX's way to say "raw bytes",
//! written by bsdtar, read by GNU tar, bsdtar and the `tar` crate).

use std::ffi::CString;
use std::io::Write;

/// A tar record: every header and every file's data padded to it.
pub const RECORD: usize = 512;

/// The entry kinds mend writes (FIFOs, sockets and devices it refuses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A hard link to an earlier entry of the archive.
    Link,
}

impl Kind {
    fn flag(self) -> u8 {
        match self {
            Kind::File => b'0',
            Kind::Link => b'1',
            Kind::Symlink => b'2',
            Kind::Dir => b'5',
        }
    }
}

/// One entry's header, as it goes in the archive.
pub struct Entry<'a> {
    pub kind: Kind,
    /// The name in the archive (a directory's with its trailing `/`).
    pub path: &'a [u8],
    /// A symlink's target, or the earlier name a hard link points at.
    pub link: Option<&'a [u8]>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: i64,
    pub uname: Option<&'a [u8]>,
    pub gname: Option<&'a [u8]>,
    pub xattrs: &'a [(CString, Vec<u8>)],
}

// Offsets and lengths of the ustar header's fields (POSIX.1-2017, pax).
const NAME: (usize, usize) = (0, 100);
const MODE: (usize, usize) = (100, 8);
const UID: (usize, usize) = (108, 8);
const GID: (usize, usize) = (116, 8);
const SIZE: (usize, usize) = (124, 12);
const MTIME: (usize, usize) = (136, 12);
const CHKSUM: (usize, usize) = (148, 8);
const TYPEFLAG: usize = 156;
const LINKNAME: (usize, usize) = (157, 100);
const MAGIC: usize = 257;
const UNAME: (usize, usize) = (265, 32);
const GNAME: (usize, usize) = (297, 32);
const PREFIX: (usize, usize) = (345, 155);

/// Write `e`'s header (a PAX header first when it needs one) to `out`;
/// `pax` is scratch space kept between calls. The data and its padding
/// to a [`RECORD`] are the caller's.
pub fn write_header(out: &mut impl Write, e: &Entry, pax: &mut Vec<u8>) -> std::io::Result<()> {
    let mut h = [0u8; RECORD];
    pax.clear();
    let split = split_path(e.path);
    let long_link = e.link.filter(|l| l.len() > LINKNAME.1);
    // Raw bytes in a PAX record are marked once, before the records.
    let not_utf8 = |v: &[u8]| std::str::from_utf8(v).is_err();
    if (split.is_none() && not_utf8(e.path)) || long_link.is_some_and(not_utf8) {
        record(pax, b"hdrcharset", b"BINARY");
    }
    match split {
        Some((prefix, name)) => {
            put(&mut h, PREFIX, prefix);
            put(&mut h, NAME, name);
        }
        None => {
            record(pax, b"path", e.path);
            // For a reader that skips PAX: as much of the name as fits.
            put(&mut h, NAME, &e.path[..e.path.len().min(NAME.1)]);
        }
    }
    if let Some(link) = long_link {
        record(pax, b"linkpath", link);
        put(&mut h, LINKNAME, &link[..LINKNAME.1]);
    } else if let Some(link) = e.link {
        put(&mut h, LINKNAME, link);
    }
    octal(&mut h, MODE, u64::from(e.mode & 0o7777));
    number(&mut h, pax, UID, b"uid", e.uid);
    number(&mut h, pax, GID, b"gid", e.gid);
    number(&mut h, pax, SIZE, b"size", e.size);
    if e.mtime >= 0 {
        number(&mut h, pax, MTIME, b"mtime", e.mtime as u64);
    } else {
        // Before 1970: PAX's decimal may be negative; the field says 0.
        let mut d = itoa::Buffer::new();
        record(pax, b"mtime", d.format(e.mtime).as_bytes());
        octal(&mut h, MTIME, 0);
    }
    h[TYPEFLAG] = e.kind.flag();
    h[MAGIC..MAGIC + 8].copy_from_slice(b"ustar\x0000");
    for (field, key, name) in [(UNAME, b"uname", e.uname), (GNAME, b"gname", e.gname)] {
        match name {
            Some(n) if n.len() < field.1 => put(&mut h, field, n),
            Some(n) => record(pax, key, n),
            None => {}
        }
    }
    for (name, value) in e.xattrs {
        let mut key = Vec::with_capacity(13 + name.as_bytes().len());
        key.extend_from_slice(b"SCHILY.xattr.");
        key.extend_from_slice(name.as_bytes());
        record(pax, &key, value);
    }
    if !pax.is_empty() {
        let mut x = [0u8; RECORD];
        put(&mut x, NAME, b"PaxHeaders/x");
        octal(&mut x, MODE, 0o644);
        octal(&mut x, UID, 0);
        octal(&mut x, GID, 0);
        octal(&mut x, SIZE, pax.len() as u64);
        octal(&mut x, MTIME, e.mtime.clamp(0, 0o77777777777) as u64);
        x[TYPEFLAG] = b'x';
        x[MAGIC..MAGIC + 8].copy_from_slice(b"ustar\x0000");
        checksum(&mut x);
        out.write_all(&x)?;
        out.write_all(pax)?;
        out.write_all(&[0u8; RECORD][..padding(pax.len() as u64)])?;
    }
    checksum(&mut h);
    out.write_all(&h)
}

/// Zero bytes after `len` bytes of data up to the next [`RECORD`].
pub fn padding(len: u64) -> usize {
    (RECORD - (len % RECORD as u64) as usize) % RECORD
}

/// A path as ustar holds it: whole in `name` (at most 100 bytes), or cut
/// at a `/` into `prefix` (at most 155) and `name` (at most 100, not
/// empty); `None` when neither fits.
fn split_path(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= NAME.1 {
        return Some((&[], path));
    }
    if path.len() > PREFIX.1 + 1 + NAME.1 {
        return None;
    }
    // The shortest prefix that leaves a name that fits: the first `/`
    // at or after len - 101, within 155, with something after it (a
    // directory's trailing `/` is part of its name).
    let first = path.len() - NAME.1 - 1;
    let last = PREFIX.1.min(path.len() - 2);
    (first.max(1)..=last)
        .find(|&i| path[i] == b'/')
        .map(|i| (&path[..i], &path[i + 1..]))
}

fn put(h: &mut [u8; RECORD], (at, len): (usize, usize), v: &[u8]) {
    debug_assert!(v.len() <= len);
    h[at..at + v.len()].copy_from_slice(v);
}

/// `v` as zero-padded octal digits filling the field but its last byte,
/// a NUL (as GNU tar writes them). The caller checked that it fits.
fn octal(h: &mut [u8; RECORD], (at, len): (usize, usize), mut v: u64) {
    let digits = &mut h[at..at + len - 1];
    for d in digits.iter_mut().rev() {
        *d = b'0' + (v & 7) as u8;
        v >>= 3;
    }
    debug_assert_eq!(v, 0, "an octal field too small");
    h[at + len - 1] = 0;
}

/// A number in its octal field, or, when it is too large for it, in a
/// PAX record (the field then says 0).
fn number(h: &mut [u8; RECORD], pax: &mut Vec<u8>, field: (usize, usize), key: &[u8], v: u64) {
    if v < 1 << (3 * (field.1 - 1)) {
        octal(h, field, v);
    } else {
        let mut d = itoa::Buffer::new();
        record(pax, key, d.format(v).as_bytes());
        octal(h, field, 0);
    }
}

/// The header's checksum: the sum of its bytes with the checksum field
/// counted as spaces, as six octal digits, a NUL and a space.
fn checksum(h: &mut [u8; RECORD]) {
    h[CHKSUM.0..CHKSUM.0 + CHKSUM.1].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    octal(h, (CHKSUM.0, 7), u64::from(sum));
    h[CHKSUM.0 + 7] = b' ';
}

/// One PAX record, "LEN KEY=VALUE\n", where LEN counts the whole record,
/// its own digits too.
fn record(pax: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    // The record but its length and the space after it.
    let rest = key.len() + value.len() + 2;
    let mut len = rest + 1 + digits(rest + 1);
    // Adding the digits may add a digit (9 -> 10, 99 -> 100): once more.
    while 1 + digits(len) + rest != len {
        len = 1 + digits(len) + rest;
    }
    let mut d = itoa::Buffer::new();
    pax.extend_from_slice(d.format(len).as_bytes());
    pax.push(b' ');
    pax.extend_from_slice(key);
    pax.push(b'=');
    pax.extend_from_slice(value);
    pax.push(b'\n');
}

fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &[u8]) -> Entry<'_> {
        Entry {
            kind: Kind::File,
            path,
            link: None,
            mode: 0o640,
            uid: 65534,
            gid: 65534,
            size: 5,
            mtime: 1_700_000_000,
            uname: Some(b"nobody"),
            gname: Some(b"nogroup"),
            xattrs: &[],
        }
    }

    fn bytes(e: &Entry) -> Vec<u8> {
        let mut out = Vec::new();
        write_header(&mut out, e, &mut Vec::new()).unwrap();
        out
    }

    /// The records of the PAX header `out` starts with, or none.
    fn pax_of(out: &[u8]) -> Vec<u8> {
        if out[TYPEFLAG] != b'x' {
            return Vec::new();
        }
        let size = usize::from_str_radix(std::str::from_utf8(&out[124..135]).unwrap(), 8).unwrap();
        out[RECORD..RECORD + size].to_vec()
    }

    /// Each record's length is its whole length, however many digits.
    fn records(pax: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        let mut rest = pax;
        while !rest.is_empty() {
            let sp = rest.iter().position(|&b| b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&rest[..sp]).unwrap().parse().unwrap();
            let rec = &rest[..len];
            assert_eq!(rec[len - 1], b'\n', "{:?}", String::from_utf8_lossy(rec));
            let eq = rec.iter().position(|&b| b == b'=').unwrap();
            out.push((rec[sp + 1..eq].to_vec(), rec[eq + 1..len - 1].to_vec()));
            rest = &rest[len..];
        }
        out
    }

    #[test]
    fn octal_fields_are_zero_padded_and_end_in_a_nul() {
        let out = bytes(&entry(b"a"));
        assert_eq!(out.len(), RECORD);
        assert_eq!(&out[100..108], b"0000640\0");
        assert_eq!(&out[108..116], b"0177776\0");
        assert_eq!(&out[124..136], b"00000000005\0");
        assert_eq!(&out[136..148], b"14524770400\0");
        assert_eq!(&out[257..265], b"ustar\x0000");
        assert_eq!(&out[265..272], b"nobody\0");
        assert_eq!(out[156], b'0');
    }

    /// The checksum is GNU tar's: the same header from GNU tar's own
    /// reading (`tar -tvf` of it lists it; a wrong sum is "A lone zero
    /// block" or "Skipping to next header") and from the sum by hand.
    #[test]
    fn the_checksum_counts_its_own_field_as_spaces() {
        let out = bytes(&entry(b"file"));
        let mut h = out.clone();
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(&out[148..156], format!("{sum:06o}\0 ").as_bytes());
        // The tar crate agrees (it checks the sum of what it reads).
        let mut tar = Vec::from(&out[..]);
        tar.extend_from_slice(b"hello");
        tar.resize(RECORD * 4, 0);
        let mut a = tar::Archive::new(&tar[..]);
        let e = a.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(&*e.path_bytes(), b"file");
        assert_eq!(e.header().mode().unwrap(), 0o640);
    }

    /// "LEN KEY=VALUE\n" with LEN counting its own digits, at the lengths
    /// where one more digit makes one more byte: 9 -> 10, 99 -> 100, 999
    /// -> 1000.
    #[test]
    fn pax_record_lengths_count_their_own_digits() {
        for n in 0..1200 {
            let value = vec![b'v'; n];
            let mut pax = Vec::new();
            record(&mut pax, b"k", &value);
            let sp = pax.iter().position(|&b| b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&pax[..sp]).unwrap().parse().unwrap();
            assert_eq!(len, pax.len(), "value of {n} bytes");
        }
        // The edges by hand: " k=\n" is 4 bytes and the value's length.
        let rec = |n| {
            let mut pax = Vec::new();
            record(&mut pax, b"k", &vec![b'v'; n]);
            pax
        };
        assert_eq!(&rec(4)[..3], b"9 k");
        assert_eq!(&rec(5)[..4], b"11 k");
        assert_eq!(rec(5).len(), 11);
        assert_eq!(&rec(93)[..3], b"99 ");
        assert_eq!(&rec(94)[..4], b"101 ");
        assert_eq!(rec(94).len(), 101);
    }

    #[test]
    fn paths_split_at_a_slash_into_prefix_and_name() {
        assert_eq!(split_path(b"short"), Some((&b""[..], &b"short"[..])));
        let p100 = vec![b'a'; 100];
        assert_eq!(split_path(&p100), Some((&b""[..], &p100[..])));
        // 101 bytes: "d/" and a name of 99.
        let mut p101 = b"d/".to_vec();
        p101.extend(vec![b'n'; 99]);
        assert_eq!(split_path(&p101), Some((&b"d"[..], &p101[2..])));
        // A 101-byte name with no slash before it fits nowhere.
        let mut long_leaf = b"d/".to_vec();
        long_leaf.extend(vec![b'n'; 101]);
        assert_eq!(split_path(&long_leaf), None);
        // A directory's trailing slash stays with its name.
        let mut dir = vec![b'p'; 150];
        dir.extend(b"/leaf/");
        assert_eq!(split_path(&dir), Some((&dir[..150], &b"leaf/"[..])));
        // 256 bytes: 155 + "/" + 100 is the largest that splits.
        let mut p256 = vec![b'p'; 155];
        p256.push(b'/');
        p256.extend(vec![b'n'; 100]);
        assert_eq!(
            split_path(&p256).map(|(p, n)| (p.len(), n.len())),
            Some((155, 100))
        );
        let mut p257 = vec![b'p'; 156];
        p257.push(b'/');
        p257.extend(vec![b'n'; 100]);
        assert_eq!(split_path(&p257), None);
    }

    /// A 300-byte path, a long link target and a long non-UTF-8 name go in
    /// PAX records; short ones, UTF-8 or not, stay in the ustar fields.
    #[test]
    fn what_ustar_cannot_hold_goes_in_pax_records() {
        let name = b"d/bad\xff\xfename\nwith newline";
        let short = bytes(&entry(name));
        assert_eq!(short.len(), RECORD);
        assert_eq!(&short[..name.len() + 1], &[&name[..], b"\0"].concat()[..]);

        let long: Vec<u8> = (0..300)
            .map(|i| if i % 50 == 49 { b'/' } else { b'x' })
            .collect();
        let long = &long[..299];
        let out = bytes(&entry(long));
        assert_eq!(
            records(&pax_of(&out)),
            vec![(b"path".to_vec(), long.to_vec())]
        );

        let mut bad = long.to_vec();
        bad[10] = 0xff;
        let target = vec![b't'; 150];
        let mut e = entry(&bad);
        e.kind = Kind::Symlink;
        e.size = 0;
        e.link = Some(&target);
        let out = bytes(&e);
        assert_eq!(
            records(&pax_of(&out)),
            vec![
                (b"hdrcharset".to_vec(), b"BINARY".to_vec()),
                (b"path".to_vec(), bad.clone()),
                (b"linkpath".to_vec(), target.clone()),
            ]
        );
        // A long link target that is not UTF-8 is marked too.
        let mut bad_target = target.clone();
        bad_target[0] = 0xfe;
        let mut e = entry(b"short");
        e.kind = Kind::Symlink;
        e.size = 0;
        e.link = Some(&bad_target);
        assert_eq!(
            records(&pax_of(&bytes(&e))),
            vec![
                (b"hdrcharset".to_vec(), b"BINARY".to_vec()),
                (b"linkpath".to_vec(), bad_target.clone()),
            ]
        );
        // The tar crate (mend's extract) reads them back.
        let mut tar = out.clone();
        tar.resize(tar.len() + 2 * RECORD, 0);
        let mut a = tar::Archive::new(&tar[..]);
        let en = a.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(&*en.path_bytes(), &bad[..]);
        assert_eq!(en.link_name_bytes().as_deref(), Some(&target[..]));
    }

    /// Sizes and ids past their octal fields (8 GiB, 2^21) and times
    /// before 1970 go in PAX records, and the tar crate reads the size and
    /// ids back from them.
    #[test]
    fn numbers_too_large_for_octal_go_in_pax_records() {
        let mut e = entry(b"big");
        e.size = (8 << 30) - 1;
        let out = bytes(&e);
        assert_eq!(out.len(), RECORD, "8 GiB - 1 fits in 11 octal digits");
        assert_eq!(&out[124..136], b"77777777777\0");

        e.size = 9 << 30;
        e.uid = 1 << 21;
        e.gid = 4_000_000_000;
        e.mtime = -86_400;
        e.uname = Some(b"a-user-name-of-thirty-two-bytes!");
        let out = bytes(&e);
        assert_eq!(
            records(&pax_of(&out)),
            vec![
                (b"uid".to_vec(), b"2097152".to_vec()),
                (b"gid".to_vec(), b"4000000000".to_vec()),
                (b"size".to_vec(), b"9663676416".to_vec()),
                (b"mtime".to_vec(), b"-86400".to_vec()),
                (
                    b"uname".to_vec(),
                    b"a-user-name-of-thirty-two-bytes!".to_vec()
                ),
            ]
        );
        let mut tar = out.clone();
        tar.resize(tar.len() + 2 * RECORD, 0);
        let mut a = tar::Archive::new(&tar[..]);
        let en = a.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(en.size(), 9 << 30);
        assert_eq!(en.header().uid().unwrap(), 1 << 21);
        assert_eq!(en.header().gid().unwrap(), 4_000_000_000);
    }

    #[test]
    fn xattrs_are_schily_records() {
        let attrs = [(c"user.mend".to_owned(), b"v\0al\n".to_vec())];
        let mut e = entry(b"f");
        e.xattrs = &attrs;
        let out = bytes(&e);
        assert_eq!(out.len(), 3 * RECORD);
        assert_eq!(&out[..12], b"PaxHeaders/x");
        assert_eq!(
            records(&pax_of(&out)),
            vec![(b"SCHILY.xattr.user.mend".to_vec(), b"v\0al\n".to_vec())]
        );
    }
}
