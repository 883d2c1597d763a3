//! The parts of a PVH kernel image the domain builder needs: its load segments (by physical
//! address) and the 32-bit entry point of its `XEN_ELFNOTE_PHYS32_ENTRY` note.
//!
//! The image is untrusted input as far as this module goes: every offset and size is checked
//! against the file, and a segment that would load outside the guest's RAM is refused by the
//! caller ([`super::layout`]).

use std::ops::Range;

/// `XEN_ELFNOTE_PHYS32_ENTRY`.
const NOTE_PHYS32_ENTRY: u32 = 18;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const EM_X86_64: u16 = 62;

/// One `PT_LOAD` segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Where it loads (`p_paddr`).
    pub paddr: u64,
    /// Its bytes in the file.
    pub file: Range<usize>,
    /// Its size in memory; the part past the file bytes is zero.
    pub memsz: u64,
}

/// A PVH-bootable image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The load segments, in file order.
    pub segments: Vec<Segment>,
    /// The 32-bit physical entry point.
    pub entry: u32,
}

impl Image {
    /// The first byte past the highest segment in memory.
    pub fn end(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.paddr + s.memsz)
            .max()
            .unwrap_or(0)
    }
}

fn bytes(data: &[u8], at: usize, len: usize) -> Result<&[u8], String> {
    at.checked_add(len)
        .and_then(|end| data.get(at..end))
        .ok_or_else(|| format!("truncated at byte {at}"))
}

fn u16_at(data: &[u8], at: usize) -> Result<u16, String> {
    Ok(u16::from_le_bytes(bytes(data, at, 2)?.try_into().unwrap()))
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, String> {
    Ok(u32::from_le_bytes(bytes(data, at, 4)?.try_into().unwrap()))
}

fn u64_at(data: &[u8], at: usize) -> Result<u64, String> {
    Ok(u64::from_le_bytes(bytes(data, at, 8)?.try_into().unwrap()))
}

fn usize_at(data: &[u8], at: usize) -> Result<usize, String> {
    usize::try_from(u64_at(data, at)?).map_err(|_| format!("offset at byte {at} too large"))
}

/// How many bytes from the start of an image the builder reads, given its first `head` bytes
/// (at least the ELF header and the program headers, [`extent_head`] says how many): the end of
/// the program headers and of the last segment in the file. An image on a volume is read up to
/// there and no further (the volume's tail is not the image's).
pub fn extent(head: &[u8]) -> Result<usize, String> {
    let (phoff, phentsize, phnum) = program_headers(head)?;
    bytes(head, phoff, phentsize * phnum).map_err(|_| "truncated program headers")?;
    let mut end = phoff + phentsize * phnum;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let offset = usize_at(head, ph + 8)?;
        let filesz = usize_at(head, ph + 32)?;
        let last = offset
            .checked_add(filesz)
            .ok_or_else(|| format!("segment {i} out of range"))?;
        end = end.max(last);
    }
    Ok(end)
}

/// How many bytes [`extent`] needs, given the image's first 64 (its ELF header).
pub fn extent_head(header: &[u8]) -> Result<usize, String> {
    let (phoff, phentsize, phnum) = program_headers(header)?;
    Ok(phoff + phentsize * phnum)
}

/// The program header table: offset, entry size and count, checked to be addressable.
fn program_headers(data: &[u8]) -> Result<(usize, usize, usize), String> {
    if bytes(data, 0, 4)? != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    let phoff = usize_at(data, 32)?;
    let phentsize = usize::from(u16_at(data, 54)?);
    let phnum = usize::from(u16_at(data, 56)?);
    if phentsize < 56 {
        return Err(format!("program header entries of {phentsize} bytes"));
    }
    // At most 65535 entries of 65535 bytes: no overflow past a sane offset.
    if phoff > 1 << 40 {
        return Err("program headers out of range".into());
    }
    Ok((phoff, phentsize, phnum))
}

/// Parses a 64-bit little-endian x86-64 ELF executable with a PVH entry note.
pub fn parse(data: &[u8]) -> Result<Image, String> {
    if bytes(data, 0, 4)? != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if data[4] != 2 || data[5] != 1 {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    if u16_at(data, 18)? != EM_X86_64 {
        return Err("not an x86-64 image".into());
    }
    let phoff = usize_at(data, 32)?;
    let phentsize = usize::from(u16_at(data, 54)?);
    let phnum = usize::from(u16_at(data, 56)?);
    if phentsize < 56 {
        return Err(format!("program header entries of {phentsize} bytes"));
    }
    let mut segments = Vec::new();
    let mut entry = None;
    for i in 0..phnum {
        let ph = phoff
            .checked_add(i * phentsize)
            .ok_or("program headers out of range")?;
        let kind = u32_at(data, ph)?;
        let offset = usize_at(data, ph + 8)?;
        let paddr = u64_at(data, ph + 24)?;
        let filesz = usize_at(data, ph + 32)?;
        let memsz = u64_at(data, ph + 40)?;
        let file = offset..offset.checked_add(filesz).ok_or("segment out of range")?;
        bytes(data, offset, filesz).map_err(|_| format!("segment {i} lies past the file"))?;
        match kind {
            PT_LOAD => {
                if (filesz as u64) > memsz {
                    return Err(format!("segment {i}: file size above memory size"));
                }
                paddr
                    .checked_add(memsz)
                    .ok_or_else(|| format!("segment {i}: wraps around"))?;
                segments.push(Segment { paddr, file, memsz });
            }
            PT_NOTE => {
                if let Some(found) = phys32_entry(&data[file])? {
                    entry = Some(found);
                }
            }
            _ => {}
        }
    }
    if segments.is_empty() {
        return Err("no load segment".into());
    }
    let entry = entry.ok_or("no XEN_ELFNOTE_PHYS32_ENTRY note: not a PVH image")?;
    let image = Image { segments, entry };
    if !image
        .segments
        .iter()
        .any(|s| (s.paddr..s.paddr + s.memsz).contains(&u64::from(entry)))
    {
        return Err(format!("the entry point {entry:#x} is in no load segment"));
    }
    Ok(image)
}

/// The PVH entry in a note segment, if it has one.
fn phys32_entry(notes: &[u8]) -> Result<Option<u32>, String> {
    let mut at = 0;
    while at + 12 <= notes.len() {
        let namesz = u32_at(notes, at)? as usize;
        let descsz = u32_at(notes, at + 4)? as usize;
        let kind = u32_at(notes, at + 8)?;
        let name_at = at + 12;
        let desc_at = name_at + namesz.next_multiple_of(4);
        let name = bytes(notes, name_at, namesz)?;
        let desc = bytes(notes, desc_at, descsz)?;
        if name.strip_suffix(b"\0").unwrap_or(name) == b"Xen" && kind == NOTE_PHYS32_ENTRY {
            return match desc.len() {
                4 => Ok(Some(u32::from_le_bytes(desc.try_into().unwrap()))),
                8 => u32::try_from(u64::from_le_bytes(desc.try_into().unwrap()))
                    .map(Some)
                    .map_err(|_| "PVH entry above 4 GiB".into()),
                n => Err(format!("PVH entry note of {n} bytes")),
            };
        }
        at = desc_at + descsz.next_multiple_of(4);
    }
    Ok(None)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal image: one load segment at 1 MiB (`code`, then `bss` zero bytes) and a note
    /// segment with the PVH entry `entry`.
    pub fn image(code: &[u8], bss: u64, entry: u32) -> Vec<u8> {
        let mut note = Vec::new();
        note.extend_from_slice(&4u32.to_le_bytes());
        note.extend_from_slice(&4u32.to_le_bytes());
        note.extend_from_slice(&NOTE_PHYS32_ENTRY.to_le_bytes());
        note.extend_from_slice(b"Xen\0");
        note.extend_from_slice(&entry.to_le_bytes());
        let phoff = 64usize;
        let code_at = phoff + 2 * 56;
        let note_at = code_at + code.len();
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes());
        f[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        f[32..40].copy_from_slice(&(phoff as u64).to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&2u16.to_le_bytes());
        let ph = |kind: u32, offset: usize, paddr: u64, filesz: usize, memsz: u64| {
            let mut p = vec![0u8; 56];
            p[..4].copy_from_slice(&kind.to_le_bytes());
            p[8..16].copy_from_slice(&(offset as u64).to_le_bytes());
            p[16..24].copy_from_slice(&paddr.to_le_bytes());
            p[24..32].copy_from_slice(&paddr.to_le_bytes());
            p[32..40].copy_from_slice(&(filesz as u64).to_le_bytes());
            p[40..48].copy_from_slice(&memsz.to_le_bytes());
            p
        };
        f.extend(ph(
            PT_LOAD,
            code_at,
            0x100000,
            code.len(),
            code.len() as u64 + bss,
        ));
        f.extend(ph(PT_NOTE, note_at, 0, note.len(), note.len() as u64));
        f.extend_from_slice(code);
        f.extend(note);
        f
    }

    #[test]
    fn finds_segments_and_the_pvh_entry() {
        let file = image(&[0x90; 32], 4096, 0x100004);
        let parsed = parse(&file).unwrap();
        assert_eq!(parsed.entry, 0x100004);
        assert_eq!(parsed.segments.len(), 1);
        assert_eq!(parsed.segments[0].paddr, 0x100000);
        assert_eq!(parsed.segments[0].file.len(), 32);
        assert_eq!(parsed.end(), 0x100000 + 32 + 4096);
    }

    #[test]
    fn the_extent_covers_headers_and_segments_only() {
        let mut data = image(&[0x90; 100], 0, 0x100000);
        let end = data.len();
        let head = extent_head(&data[..64]).unwrap();
        assert!(head <= end);
        assert_eq!(extent(&data[..head]).unwrap(), end);
        // A volume's tail past the image changes nothing.
        data.extend([0u8; 4096]);
        assert_eq!(extent(&data[..head]).unwrap(), end);
        assert!(extent_head(b"not an elf at all, but long enough for a header........").is_err());
        assert!(
            extent(&data[..head - 1]).is_err(),
            "truncated program headers"
        );
    }

    #[test]
    fn refuses_what_it_cannot_boot() {
        assert!(parse(b"#!/bin/sh\n").unwrap_err().contains("not an ELF"));
        let outside = image(&[0x90; 32], 0, 0x200000);
        assert!(parse(&outside).unwrap_err().contains("in no load segment"));
        let mut no_note = image(&[0x90; 32], 0, 0x100000);
        let len = no_note.len();
        no_note[len - 12..len - 8].copy_from_slice(&17u32.to_le_bytes());
        assert!(parse(&no_note).unwrap_err().contains("not a PVH image"));
        let full = image(&[0x90; 32], 0, 0x100000);
        for cut in [10, 63, 100, full.len() - 3] {
            assert!(parse(&full[..cut]).is_err(), "truncated at {cut}");
        }
    }
}
