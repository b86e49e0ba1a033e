//! `sglang_lsm._native.Client`: the node service's client, with the calls of `Store`.

use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use sglang_lsm::{Client, ClientOptions};

use crate::{
    as_slices, borrow_pages, engine_error, exists_keys, get_regions, key_bytes, keys_from,
    optional_keys, pointer_pages, put_regions, store_error, PutLinks, Source,
};

/// A client of a node service (`sglang-lsm serve`). Use `sglang_lsm.Client`.
#[pyclass(frozen, module = "sglang_lsm._native", name = "Client")]
pub(crate) struct NativeClient {
    socket: String,
    inner: Mutex<Option<Arc<Client>>>,
}

impl NativeClient {
    fn client(&self, py: Python<'_>) -> PyResult<Arc<Client>> {
        match self.inner.lock().as_ref() {
            Some(c) => Ok(Arc::clone(c)),
            None => Err(store_error(
                py,
                "closed",
                format!("client of {} is closed", self.socket),
            )),
        }
    }
}

#[pymethods]
impl NativeClient {
    /// A client of the service at `socket`; with `connect`, connects now so a wrong path or a
    /// refused uid fails here.
    #[new]
    fn new(
        py: Python<'_>,
        socket: std::path::PathBuf,
        timeout_ms: u64,
        max_connections: usize,
        connect: bool,
    ) -> PyResult<Self> {
        let shown = socket.display().to_string();
        let client = Client::new(
            socket,
            ClientOptions {
                timeout_ms,
                max_connections,
            },
        );
        if connect {
            py.detach(|| client.connect())
                .map_err(|e| engine_error(py, e))?;
        }
        Ok(Self {
            socket: shown,
            inner: Mutex::new(Some(Arc::new(client))),
        })
    }

    fn connect(&self, py: Python<'_>) -> PyResult<()> {
        let client = self.client(py)?;
        py.detach(|| client.connect())
            .map_err(|e| engine_error(py, e))
    }

    #[getter]
    fn socket(&self) -> &str {
        &self.socket
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
        let client = self.client(py)?;
        let keys = keys_from(keys)?;
        let links = PutLinks::from_args(py, prefix_keys, parent_keys)?;
        let borrowed = borrow_pages(values, false)?;
        put_regions(
            py,
            &*client,
            &keys,
            &borrowed.pages,
            &links,
            Source::Buffers,
        )
    }

    fn get_batch(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
        buffers: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<bool>> {
        let client = self.client(py)?;
        let keys = keys_from(keys)?;
        let borrowed = borrow_pages(buffers, true)?;
        get_regions(py, &*client, &keys, &borrowed.pages, Source::Buffers)
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
        let client = self.client(py)?;
        let keys = keys_from(keys)?;
        let links = PutLinks::from_args(py, prefix_keys, parent_keys)?;
        let pages = pointer_pages(py, ptrs, sizes)?;
        put_regions(py, &*client, &keys, &pages, &links, Source::Pointers)
    }

    fn get_batch_ptrs(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
        ptrs: &Bound<'_, PyAny>,
        sizes: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<bool>> {
        let client = self.client(py)?;
        let keys = keys_from(keys)?;
        let pages = pointer_pages(py, ptrs, sizes)?;
        get_regions(py, &*client, &keys, &pages, Source::Pointers)
    }

    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let client = self.client(py)?;
        let key = key_bytes(key)?;
        let value = py
            .detach(|| client.get(&key))
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
        let client = self.client(py)?;
        let keys = keys_from(keys)?;
        let prefix = optional_keys(prefix_keys)?;
        py.detach(|| client.probe(&as_slices(&keys), &as_slices(&prefix)))
            .map_err(|e| engine_error(py, e))
    }

    fn exists_batch(&self, py: Python<'_>, keys: &Bound<'_, PyAny>) -> PyResult<Vec<bool>> {
        let client = self.client(py)?;
        exists_keys(py, &*client, keys)
    }

    fn exists(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let client = self.client(py)?;
        let key = key_bytes(key)?;
        py.detach(|| client.exists(&key))
            .map_err(|e| engine_error(py, e))
    }

    fn delete(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let client = self.client(py)?;
        let key = key_bytes(key)?;
        py.detach(|| client.delete(&key))
            .map_err(|e| engine_error(py, e))
    }

    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        let client = self.client(py)?;
        py.detach(|| client.clear())
            .map_err(|e| engine_error(py, e))
    }

    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let client = self.client(py)?;
        py.detach(|| client.flush())
            .map_err(|e| engine_error(py, e))
    }

    /// The service's store statistics as a JSON object string.
    fn stats_json(&self, py: Python<'_>) -> PyResult<String> {
        let client = self.client(py)?;
        let stats = py
            .detach(|| client.stats())
            .map_err(|e| engine_error(py, e))?;
        serde_json::to_string(&stats)
            .map_err(|e| store_error(py, "internal", format!("cannot encode stats: {e}")))
    }

    fn metrics_text(&self, py: Python<'_>) -> PyResult<String> {
        let client = self.client(py)?;
        py.detach(|| client.metrics_text())
            .map_err(|e| engine_error(py, e))
    }

    /// Drops the connections; later calls raise `StoreClosedError`. The service's store is
    /// untouched. Idempotent.
    fn close(&self) {
        self.inner.lock().take();
    }
}
