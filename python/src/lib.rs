//! `sglang_lsm._native`: the thin PyO3 layer between Python and the `sglang-lsm` engine.
//!
//! This module only converts arguments and results. Every engine call that may touch the disk
//! runs with the GIL released (`Python::detach`), so SGLang's prefetch and backup threads, and
//! any other Python thread, keep running while pages are read or written.
//!
//! Errors from the engine become instances of the exception classes defined in
//! `sglang_lsm/errors.py` (picked by the engine's error code), carrying the engine's message.
//! Argument problems found here use the same classes with the code `invalid_argument`.

mod client;
mod memcheck;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyList, PyString, PyTuple};
use sglang_lsm::{Follower, ReadPages, Store, StoreConfig, WritePages};

/// Builds the Python exception for an error `code` and `message`.
///
/// The classes live in Python (`sglang_lsm.errors`) so they can also subclass `ValueError`,
/// `OSError` and friends; if that module cannot be imported the error still surfaces, as a
/// `RuntimeError`, rather than being lost.
pub(crate) fn store_error(py: Python<'_>, code: &str, message: String) -> PyErr {
    let built = py
        .import("sglang_lsm.errors")
        .and_then(|m| m.getattr("_from_native"))
        .and_then(|f| f.call1((code, message.as_str())));
    match built {
        Ok(exc) => PyErr::from_value(exc),
        Err(_) => PyRuntimeError::new_err(format!("[{code}] {message}")),
    }
}

pub(crate) fn engine_error(py: Python<'_>, err: sglang_lsm::Error) -> PyErr {
    store_error(py, err.code(), err.to_string())
}

fn invalid(py: Python<'_>, message: impl Into<String>) -> PyErr {
    store_error(py, "invalid_argument", message.into())
}

/// A key as bytes: `bytes`, `bytearray` and `str` (UTF-8) are accepted.
pub(crate) fn key_bytes(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(s.to_str()?.as_bytes().to_vec());
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(b.to_vec());
    }
    Err(invalid(
        obj.py(),
        format!(
            "keys must be str or bytes, got {}",
            obj.get_type().name()?.to_str()?
        ),
    ))
}

/// Rejects a lone `str`/`bytes`/`bytearray` where a list (one entry per key) is expected:
/// iterating it would silently yield characters or integers.
fn check_sequence(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<()> {
    if obj.cast::<PyString>().is_ok()
        || obj.cast::<PyBytes>().is_ok()
        || obj.cast::<PyByteArray>().is_ok()
    {
        return Err(invalid(
            obj.py(),
            format!("{what} must be a list with one entry per key, not a single str or bytes"),
        ));
    }
    Ok(())
}

pub(crate) fn keys_from(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<u8>>> {
    check_sequence(obj, "keys")?;
    let mut out = Vec::new();
    for item in obj.try_iter()? {
        out.push(key_bytes(&item?)?);
    }
    Ok(out)
}

pub(crate) fn optional_keys(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<Vec<u8>>> {
    match obj {
        Some(o) if !o.is_none() => keys_from(o),
        _ => Ok(Vec::new()),
    }
}

pub(crate) fn as_slices(keys: &[Vec<u8>]) -> Vec<&[u8]> {
    keys.iter().map(Vec::as_slice).collect()
}

/// One memory region, as an address and a length. Plain integers, so they can cross
/// `Python::detach` (raw pointers are not `Send`).
#[derive(Clone, Copy)]
pub(crate) struct Region {
    addr: usize,
    len: usize,
}

impl Region {
    /// # Safety
    /// The region must be readable for `len` bytes for the lifetime `'a`.
    unsafe fn as_slice<'a>(self) -> &'a [u8] {
        if self.len == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(self.addr as *const u8, self.len)
        }
    }

    /// # Safety
    /// The region must be writable for `len` bytes for `'a`, and not overlap any other
    /// region handed out at the same time (checked by [`check_disjoint`]).
    unsafe fn as_mut_slice<'a>(self) -> &'a mut [u8] {
        if self.len == 0 {
            &mut []
        } else {
            std::slice::from_raw_parts_mut(self.addr as *mut u8, self.len)
        }
    }
}

/// Refuses caller-vouched addresses this process cannot read (or, for destinations, write)
/// before any I/O, so a bad `data_ptr()` is an `InvalidArgumentError` and the store unchanged.
fn refuse_unmapped(pages: &[Vec<Region>], writable: bool) -> sglang_lsm::Result<()> {
    let spans: Vec<memcheck::Span> = pages
        .iter()
        .flatten()
        .map(|r| memcheck::Span {
            addr: r.addr,
            len: r.len,
        })
        .collect();
    memcheck::check(&spans, writable).map_err(|(span, addr)| {
        let (page_no, r) = pages
            .iter()
            .enumerate()
            .flat_map(|(no, p)| p.iter().map(move |r| (no, r)))
            .nth(span)
            .map_or((0, Region { addr: 0, len: 0 }), |(no, r)| (no, *r));
        sglang_lsm::Error::InvalidArgument(format!(
            "page {page_no}: region {:#x}+{} is not {} memory of this process (byte {addr:#x} \
             faults); pass data_ptr() of a live CPU tensor and its size in bytes",
            r.addr,
            r.len,
            if writable { "writable" } else { "readable" }
        ))
    })
}

/// Where a page's regions came from: Python buffers are valid by construction, raw addresses
/// are checked against the process's memory map first.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Buffers,
    Pointers,
}

/// Buffers borrowed from Python objects through the buffer protocol. The `PyUntypedBuffer`s
/// keep the exporting objects alive (and their memory in place) until this is dropped, which
/// happens after the engine call returns.
pub(crate) struct BorrowedPages {
    _holds: Vec<PyUntypedBuffer>,
    pub(crate) pages: Vec<Vec<Region>>,
}

/// Each element of `values` is one page: either a single buffer object or a list/tuple of
/// buffer objects whose contents are concatenated in order.
pub(crate) fn borrow_pages(values: &Bound<'_, PyAny>, writable: bool) -> PyResult<BorrowedPages> {
    let py = values.py();
    check_sequence(values, if writable { "buffers" } else { "values" })?;
    let mut holds = Vec::new();
    let mut pages = Vec::new();
    for (page_no, page) in values.try_iter()?.enumerate() {
        let page = page?;
        let mut regions = Vec::new();
        if page.cast::<PyList>().is_ok() || page.cast::<PyTuple>().is_ok() {
            for part in page.try_iter()? {
                regions.push(borrow_one(&part?, writable, page_no, &mut holds)?);
            }
        } else {
            regions.push(borrow_one(&page, writable, page_no, &mut holds)?);
        }
        if regions.is_empty() {
            return Err(invalid(py, format!("page {page_no} has no buffers")));
        }
        pages.push(regions);
    }
    Ok(BorrowedPages {
        _holds: holds,
        pages,
    })
}

fn borrow_one(
    obj: &Bound<'_, PyAny>,
    writable: bool,
    page_no: usize,
    holds: &mut Vec<PyUntypedBuffer>,
) -> PyResult<Region> {
    let py = obj.py();
    let buf = PyUntypedBuffer::get(obj).map_err(|e| {
        invalid(
            py,
            format!("page {page_no}: object does not expose a buffer ({e}); pass bytes, bytearray, memoryview or a numpy array, or use the *_ptrs methods for torch tensors"),
        )
    })?;
    if !buf.is_c_contiguous() {
        return Err(invalid(
            py,
            format!("page {page_no}: buffer is not C-contiguous"),
        ));
    }
    if writable && buf.readonly() {
        return Err(invalid(
            py,
            format!("page {page_no}: buffer is read-only; get_batch needs writable buffers (bytearray, numpy array, writable memoryview)"),
        ));
    }
    let region = Region {
        addr: buf.buf_ptr() as usize,
        len: buf.len_bytes(),
    };
    holds.push(buf);
    Ok(region)
}

/// Regions given as integer addresses (`tensor.data_ptr()`) and byte sizes, one list per page.
pub(crate) fn pointer_pages(
    py: Python<'_>,
    ptrs: &Bound<'_, PyAny>,
    sizes: &Bound<'_, PyAny>,
) -> PyResult<Vec<Vec<Region>>> {
    let ptrs: Vec<Vec<usize>> = ptrs.extract().map_err(|e| {
        invalid(
            py,
            format!("ptrs must be a list (one per page) of lists of non-negative ints: {e}"),
        )
    })?;
    let sizes: Vec<Vec<usize>> = sizes.extract().map_err(|e| {
        invalid(
            py,
            format!("sizes must be a list (one per page) of lists of non-negative ints: {e}"),
        )
    })?;
    if ptrs.len() != sizes.len() {
        return Err(invalid(
            py,
            format!(
                "ptrs has {} pages but sizes has {}",
                ptrs.len(),
                sizes.len()
            ),
        ));
    }
    let mut pages = Vec::with_capacity(ptrs.len());
    for (page_no, (p, s)) in ptrs.iter().zip(&sizes).enumerate() {
        if p.len() != s.len() {
            return Err(invalid(
                py,
                format!("page {page_no}: {} pointers but {} sizes", p.len(), s.len()),
            ));
        }
        if p.is_empty() {
            return Err(invalid(py, format!("page {page_no} has no pointers")));
        }
        let mut regions = Vec::with_capacity(p.len());
        for (&addr, &len) in p.iter().zip(s) {
            if len > 0 && addr == 0 {
                return Err(invalid(py, format!("page {page_no}: null pointer")));
            }
            if addr.checked_add(len).is_none() || len > isize::MAX as usize {
                return Err(invalid(
                    py,
                    format!("page {page_no}: region {addr:#x}+{len} wraps the address space"),
                ));
            }
            regions.push(Region { addr, len });
        }
        pages.push(regions);
    }
    Ok(pages)
}

/// Rejects destination regions that overlap: the engine fills them concurrently and Rust
/// forbids two live mutable views of one byte.
fn check_disjoint(py: Python<'_>, pages: &[Vec<Region>]) -> PyResult<()> {
    let mut spans: Vec<(usize, usize)> = pages
        .iter()
        .flatten()
        .filter(|r| r.len > 0)
        .map(|r| (r.addr, r.addr + r.len))
        .collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(invalid(
                py,
                format!(
                    "destination buffers overlap ({:#x}..{:#x} and {:#x}..{:#x})",
                    w[0].0, w[0].1, w[1].0, w[1].1
                ),
            ));
        }
    }
    Ok(())
}

fn check_count(py: Python<'_>, what: &str, keys: usize, pages: usize) -> PyResult<()> {
    if keys == pages {
        Ok(())
    } else {
        Err(invalid(
            py,
            format!("{keys} keys but {pages} {what}; pass one entry per key"),
        ))
    }
}

/// What a put's pages hang under: a chain after prefix keys, or one parent key each.
pub(crate) enum PutLinks {
    Chain(Vec<Vec<u8>>),
    Parents(Vec<Vec<u8>>),
}

impl PutLinks {
    /// From the Python arguments: `parent_keys` (one per key) or `prefix_keys`, not both.
    pub(crate) fn from_args(
        py: Python<'_>,
        prefix_keys: Option<&Bound<'_, PyAny>>,
        parent_keys: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        match (prefix_keys, parent_keys) {
            (Some(p), Some(_)) if !p.is_none() => Err(invalid(
                py,
                "pass prefix_keys (a chain) or parent_keys (one parent per key), not both",
            )),
            (_, Some(parents)) if !parents.is_none() => Ok(Self::Parents(keys_from(parents)?)),
            (prefix, _) => Ok(Self::Chain(optional_keys(prefix)?)),
        }
    }
}

/// Runs the engine put (a `Store`'s or a `Client`'s) with the GIL released.
pub(crate) fn put_regions(
    py: Python<'_>,
    store: &(impl WritePages + ?Sized),
    keys: &[Vec<u8>],
    pages: &[Vec<Region>],
    links: &PutLinks,
    source: Source,
) -> PyResult<Vec<bool>> {
    check_count(py, "values", keys.len(), pages.len())?;
    if let PutLinks::Parents(parents) = links {
        check_count(py, "parent keys", keys.len(), parents.len())?;
    }
    let result = py.detach(|| {
        if source == Source::Pointers {
            refuse_unmapped(pages, false)?;
        }
        let keys = as_slices(keys);
        // SAFETY: every region is either a live Python buffer held by the caller until this
        // returns, or memory the caller vouched for by passing its address.
        let values: Vec<Vec<&[u8]>> = pages
            .iter()
            .map(|p| p.iter().map(|r| unsafe { r.as_slice() }).collect())
            .collect();
        match links {
            PutLinks::Chain(prefix) => store.write_pages(&keys, &values, &as_slices(prefix)),
            PutLinks::Parents(parents) => {
                store.write_pages_under(&keys, &values, &as_slices(parents))
            }
        }
    });
    result.map_err(|e| engine_error(py, e))
}

/// Runs an engine `exists_batch` with the GIL released.
pub(crate) fn exists_keys(
    py: Python<'_>,
    store: &(impl ReadPages + ?Sized),
    keys: &Bound<'_, PyAny>,
) -> PyResult<Vec<bool>> {
    let keys = keys_from(keys)?;
    py.detach(|| store.pages_exist(&as_slices(&keys)))
        .map_err(|e| engine_error(py, e))
}

/// Runs an engine get (a [`Store`]'s or a [`Follower`]'s) with the GIL released.
pub(crate) fn get_regions(
    py: Python<'_>,
    store: &(impl ReadPages + ?Sized),
    keys: &[Vec<u8>],
    pages: &[Vec<Region>],
    source: Source,
) -> PyResult<Vec<bool>> {
    check_count(py, "buffers", keys.len(), pages.len())?;
    check_disjoint(py, pages)?;
    let result = py.detach(|| {
        if source == Source::Pointers {
            refuse_unmapped(pages, true)?;
        }
        let keys = as_slices(keys);
        // SAFETY: regions are writable (checked for Python buffers, vouched for by pointer
        // callers), alive until this returns, and pairwise disjoint (check_disjoint).
        let mut buffers: Vec<Vec<&mut [u8]>> = pages
            .iter()
            .map(|p| p.iter().map(|r| unsafe { r.as_mut_slice() }).collect())
            .collect();
        store.read_pages(&keys, &mut buffers)
    });
    result.map_err(|e| engine_error(py, e))
}

/// An open store. Use `sglang_lsm.Store`, which wraps this class with documentation and
/// keyword options.
#[pyclass(frozen, module = "sglang_lsm._native", name = "Store")]
struct NativeStore {
    path: String,
    inner: Mutex<Option<Arc<Store>>>,
}

impl NativeStore {
    fn store(&self, py: Python<'_>) -> PyResult<Arc<Store>> {
        match self.inner.lock().as_ref() {
            Some(s) => Ok(Arc::clone(s)),
            None => Err(store_error(
                py,
                "closed",
                format!("store at {} is closed", self.path),
            )),
        }
    }
}

#[pymethods]
impl NativeStore {
    /// Opens (creating if needed) the store in directory `path`. `config_json` is the engine
    /// configuration as a JSON object; unknown keys are rejected by the engine.
    #[new]
    fn new(py: Python<'_>, path: std::path::PathBuf, config_json: &str) -> PyResult<Self> {
        let config = StoreConfig::from_json(config_json).map_err(|e| engine_error(py, e))?;
        let shown = path.display().to_string();
        let store = py
            .detach(|| Store::open(&path, config))
            .map_err(|e| engine_error(py, e))?;
        Ok(Self {
            path: shown,
            inner: Mutex::new(Some(Arc::new(store))),
        })
    }

    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    #[getter]
    fn closed(&self) -> bool {
        self.inner.lock().is_none()
    }

    #[pyo3(signature = (keys, values, prefix_keys=None, parent_keys=None))]
    fn put_batch(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
        values: &Bound<'_, PyAny>,
        prefix_keys: Option<&Bound<'_, PyAny>>,
        parent_keys: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<bool>> {
        let store = self.store(py)?;
        let keys = keys_from(keys)?;
        let links = PutLinks::from_args(py, prefix_keys, parent_keys)?;
        let borrowed = borrow_pages(values, false)?;
        put_regions(py, &*store, &keys, &borrowed.pages, &links, Source::Buffers)
    }

    fn get_batch(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
        buffers: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<bool>> {
        let store = self.store(py)?;
        let keys = keys_from(keys)?;
        let borrowed = borrow_pages(buffers, true)?;
        get_regions(py, &*store, &keys, &borrowed.pages, Source::Buffers)
    }

    #[pyo3(signature = (keys, ptrs, sizes, prefix_keys=None, parent_keys=None))]
    fn put_batch_ptrs(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
        ptrs: &Bound<'_, PyAny>,
        sizes: &Bound<'_, PyAny>,
        prefix_keys: Option<&Bound<'_, PyAny>>,
        parent_keys: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<bool>> {
        let store = self.store(py)?;
        let keys = keys_from(keys)?;
        let links = PutLinks::from_args(py, prefix_keys, parent_keys)?;
        let pages = pointer_pages(py, ptrs, sizes)?;
        put_regions(py, &*store, &keys, &pages, &links, Source::Pointers)
    }

    fn get_batch_ptrs(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
        ptrs: &Bound<'_, PyAny>,
        sizes: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<bool>> {
        let store = self.store(py)?;
        let keys = keys_from(keys)?;
        let pages = pointer_pages(py, ptrs, sizes)?;
        get_regions(py, &*store, &keys, &pages, Source::Pointers)
    }

    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let store = self.store(py)?;
        let key = key_bytes(key)?;
        let value = py
            .detach(|| store.get(&key))
            .map_err(|e| engine_error(py, e))?;
        Ok(value.map(|v| PyBytes::new(py, &v)))
    }

    #[pyo3(signature = (keys, prefix_keys=None))]
    fn probe(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
        prefix_keys: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let store = self.store(py)?;
        let keys = keys_from(keys)?;
        let prefix = optional_keys(prefix_keys)?;
        py.detach(|| store.probe(&as_slices(&keys), &as_slices(&prefix)))
            .map_err(|e| engine_error(py, e))
    }

    fn exists_batch(&self, py: Python<'_>, keys: &Bound<'_, PyAny>) -> PyResult<Vec<bool>> {
        let store = self.store(py)?;
        exists_keys(py, &*store, keys)
    }

    fn exists(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let store = self.store(py)?;
        let key = key_bytes(key)?;
        py.detach(|| store.exists(&key))
            .map_err(|e| engine_error(py, e))
    }

    fn delete(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let store = self.store(py)?;
        let key = key_bytes(key)?;
        py.detach(|| store.delete(&key))
            .map_err(|e| engine_error(py, e))
    }

    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        let store = self.store(py)?;
        py.detach(|| store.clear()).map_err(|e| engine_error(py, e))
    }

    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let store = self.store(py)?;
        py.detach(|| store.flush()).map_err(|e| engine_error(py, e))
    }

    /// Engine statistics as a JSON object string.
    fn stats_json(&self, py: Python<'_>) -> PyResult<String> {
        let store = self.store(py)?;
        let stats = py.detach(|| store.stats());
        serde_json::to_string(&stats)
            .map_err(|e| store_error(py, "internal", format!("cannot encode stats: {e}")))
    }

    /// Metrics in the Prometheus text format.
    fn metrics_text(&self, py: Python<'_>) -> PyResult<String> {
        let store = self.store(py)?;
        Ok(py.detach(|| store.metrics_text()))
    }

    /// Flushes and closes the store, releasing its directory lock. Calls still running on other
    /// threads finish first; later calls raise `StoreClosedError`. Closing twice is a no-op.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let taken = self.inner.lock().take();
        let Some(store) = taken else {
            return Ok(());
        };
        py.detach(|| {
            let flushed = store.flush();
            // Wait for in-flight calls (they hold clones) so the lock is released on return.
            let mut store = store;
            loop {
                match Arc::try_unwrap(store) {
                    Ok(owned) => {
                        drop(owned);
                        break;
                    }
                    Err(shared) => {
                        store = shared;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            flushed
        })
        .map_err(|e| engine_error(py, e))
    }
}

/// A read-only follower of a store another process writes. Use `sglang_lsm.Follower`.
#[pyclass(frozen, module = "sglang_lsm._native", name = "Follower")]
struct NativeFollower {
    path: String,
    inner: Mutex<Option<Arc<Follower>>>,
}

impl NativeFollower {
    fn follower(&self, py: Python<'_>) -> PyResult<Arc<Follower>> {
        match self.inner.lock().as_ref() {
            Some(f) => Ok(Arc::clone(f)),
            None => Err(store_error(
                py,
                "closed",
                format!("follower of {} is closed", self.path),
            )),
        }
    }
}

#[pymethods]
impl NativeFollower {
    /// Follows the store in directory `path` (which need not exist yet), rescanning its log at
    /// most every `refresh_interval_ms`.
    #[new]
    fn new(py: Python<'_>, path: std::path::PathBuf, refresh_interval_ms: u64) -> PyResult<Self> {
        let shown = path.display().to_string();
        let follower = py
            .detach(|| Follower::open(&path, refresh_interval_ms))
            .map_err(|e| engine_error(py, e))?;
        Ok(Self {
            path: shown,
            inner: Mutex::new(Some(Arc::new(follower))),
        })
    }

    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    #[getter]
    fn closed(&self) -> bool {
        self.inner.lock().is_none()
    }

    fn get_batch(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
        buffers: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<bool>> {
        let follower = self.follower(py)?;
        let keys = keys_from(keys)?;
        let borrowed = borrow_pages(buffers, true)?;
        get_regions(py, &*follower, &keys, &borrowed.pages, Source::Buffers)
    }

    fn get_batch_ptrs(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
        ptrs: &Bound<'_, PyAny>,
        sizes: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<bool>> {
        let follower = self.follower(py)?;
        let keys = keys_from(keys)?;
        let pages = pointer_pages(py, ptrs, sizes)?;
        get_regions(py, &*follower, &keys, &pages, Source::Pointers)
    }

    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let follower = self.follower(py)?;
        let key = key_bytes(key)?;
        let value = py
            .detach(|| follower.get(&key))
            .map_err(|e| engine_error(py, e))?;
        Ok(value.map(|v| PyBytes::new(py, &v)))
    }

    fn probe(&self, py: Python<'_>, keys: &Bound<'_, PyAny>) -> PyResult<usize> {
        let follower = self.follower(py)?;
        let keys = keys_from(keys)?;
        py.detach(|| follower.probe(&as_slices(&keys)))
            .map_err(|e| engine_error(py, e))
    }

    fn exists_batch(&self, py: Python<'_>, keys: &Bound<'_, PyAny>) -> PyResult<Vec<bool>> {
        let follower = self.follower(py)?;
        exists_keys(py, &*follower, keys)
    }

    fn exists(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let follower = self.follower(py)?;
        let key = key_bytes(key)?;
        py.detach(|| follower.exists(&key))
            .map_err(|e| engine_error(py, e))
    }

    fn refresh(&self, py: Python<'_>) -> PyResult<()> {
        let follower = self.follower(py)?;
        py.detach(|| follower.refresh())
            .map_err(|e| engine_error(py, e))
    }

    /// Follower statistics as a JSON object string.
    fn stats_json(&self, py: Python<'_>) -> PyResult<String> {
        let follower = self.follower(py)?;
        let stats = py.detach(|| follower.stats());
        serde_json::to_string(&stats)
            .map_err(|e| store_error(py, "internal", format!("cannot encode stats: {e}")))
    }

    /// Metrics in the Prometheus text format.
    fn metrics_text(&self, py: Python<'_>) -> PyResult<String> {
        let follower = self.follower(py)?;
        Ok(py.detach(|| follower.metrics_text()))
    }

    /// Closes the follower; later calls raise `StoreClosedError`. Closing twice is a no-op.
    fn close(&self) {
        self.inner.lock().take();
    }
}

/// The compiled half of the `sglang_lsm` package.
#[pymodule]
#[pyo3(name = "_native")]
fn native_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeStore>()?;
    m.add_class::<NativeFollower>()?;
    m.add_class::<client::NativeClient>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
