//! What `halfclose run` makes sure of before the first trial: that what it will write can be
//! written. A capture directory or report path that cannot be is an error (exit 2) then,
//! rather than captures and reports silently missing after the run.

use std::fs::{self, OpenOptions};
use std::io::Read;
use std::path::Path;

/// A file's bytes, at most `max` of them: Err(None) when it holds more (a size that a stat
/// cannot tell, as /dev/zero's, included), Err(Some(e)) when it cannot be read. Every file a
/// user names (scripts, captures, reports) is read through this, so none can make halfclose
/// allocate without bound.
pub fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, Option<std::io::Error>> {
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|f| f.take(max + 1).read_to_end(&mut bytes))
        .map_err(Some)?;
    match bytes.len() as u64 > max {
        true => Err(None),
        false => Ok(bytes),
    }
}

/// The capture directory: made if missing (with its parents), and a file can be created in it.
/// The error says which of the two failed.
pub fn writable_dir(dir: &Path) -> Result<(), String> {
    if dir.exists() && !dir.is_dir() {
        return Err("it exists and is not a directory".into());
    }
    fs::create_dir_all(dir).map_err(|e| format!("cannot make the directory: {e}"))?;
    let probe = dir.join(format!(".halfclose-write-test-{}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| format!("cannot create a file in it: {e}"))?;
    fs::remove_file(&probe).map_err(|e| format!("cannot remove a file from it: {e}"))
}

/// A report file: its parent directories are made if missing, and the file can be opened for
/// writing. Nothing is left behind by the check: a file that did not exist is removed again.
pub fn writable_file(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err("it is a directory".into());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if dir.exists() && !dir.is_dir() {
            return Err(format!("{} is not a directory", dir.display()));
        }
        fs::create_dir_all(dir)
            .map_err(|e| format!("cannot make the directory {}: {e}", dir.display()))?;
    }
    let existed = path.exists();
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| format!("cannot open it for writing: {e}"))?;
    if !existed {
        fs::remove_file(path).map_err(|e| format!("cannot remove the test file: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritable_places_are_errors() {
        let base = std::env::temp_dir().join(format!("halfclose-preflight-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).unwrap();
        let file = base.join("a-file");
        fs::write(&file, "x").unwrap();
        // A directory where a file is, under a file, under /proc: refused.
        assert!(writable_dir(&file).is_err());
        assert!(writable_dir(&file.join("sub")).is_err());
        assert!(writable_dir(Path::new("/proc")).is_err());
        assert!(writable_dir(Path::new("/proc/halfclose")).is_err());
        assert!(writable_file(&file.join("r.json")).is_err());
        assert!(writable_file(&base).is_err());
        assert!(writable_file(Path::new("/proc/r.json")).is_err());
        // Missing parents are made; the check leaves no file, and keeps an existing one.
        let deep = base.join("x/y/r.json");
        writable_file(&deep).unwrap();
        assert!(deep.parent().unwrap().is_dir() && !deep.exists());
        writable_file(&file).unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "x");
        writable_dir(&base.join("pcaps")).unwrap();
        assert_eq!(fs::read_dir(base.join("pcaps")).unwrap().count(), 0);
        fs::remove_dir_all(&base).unwrap();
    }
}
