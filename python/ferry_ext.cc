// ferry_ext.cc: the `ferry._ext` Python extension, a thin pybind11 layer over
// replication/device_restore.h. restore() opens a snapshot (a .ferry file,
// a local store, a DR receiver), restores it with the GIL released and
// returns a Restoration: tensor entries that hand their memory over through
// DLPack capsules, and host files that export it through the buffer
// protocol, all without a copy. The user-facing API (ferry.load,
// ferry.restore_files) is the Python package python/ferry beside it.
//
// Errors: a failed Status raises ferry.FerryError (a RuntimeError) with the
// status text, or ferry.CorruptionError (a FerryError) for damaged data, so
// a bad snapshot names the chunk, file and offset.
#include <Python.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "base/build_info.h"
#include "cuda/gpu_engine.h"
#include "python/dlpack_tensor.h"
#include "replication/device_restore.h"
#include "replication/frame_sources.h"

namespace py = pybind11;

namespace ferry::python {
namespace {

using replication::RestoredFile;
using replication::RestoredTensor;

// The module's exception types; created once at import and owned by the
// module (never freed: the interpreter may be finalising when they would).
PyObject* g_ferry_error = nullptr;
PyObject* g_corruption_error = nullptr;

[[noreturn]] void raise_status(const Status& status) {
  PyObject* type = status.code() == Code::kCorruption ? g_corruption_error : g_ferry_error;
  PyErr_SetString(type, status.to_string().c_str());
  throw py::error_already_set();
}

template <typename T>
T value_or_raise(Result<T> r) {
  if (!r.is_ok()) raise_status(r.status());
  return std::move(r).value();
}

// Whether an allocation is still alive, without keeping it so: a debugging
// aid for tests that check that dropping every tensor frees the memory.
struct AllocationProbe {
  std::weak_ptr<void> allocation;
  bool alive() const { return !allocation.expired(); }
  long use_count() const { return allocation.use_count(); }
};

// A memoryview of an empty file still needs a valid address.
char empty_file_byte[1];

void capsule_destructor(PyObject* capsule) {
  // A consumer that took the tensor renamed the capsule ("used_dltensor")
  // and owns it now; an unconsumed one is still ours to free.
  if (PyCapsule_IsValid(capsule, "dltensor")) {
    auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule, "dltensor"));
    if (managed != nullptr && managed->deleter != nullptr) managed->deleter(managed);
  } else {
    PyErr_Clear();
  }
}

py::capsule to_dlpack(const RestoredTensor& t) {
  DLManagedTensor* managed = value_or_raise(make_managed_tensor(t));
  PyObject* capsule = PyCapsule_New(managed, "dltensor", capsule_destructor);
  if (capsule == nullptr) {
    managed->deleter(managed);
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::capsule>(capsule);
}

// The tensor's bytes, copied (host tensors only): lets a test see the
// restored buffer through a path other than the DLPack tensor.
py::bytes debug_bytes(const RestoredTensor& t) {
  if (t.device.kind != replication::Device::Kind::kCpu) {
    raise_status(Status::invalid_argument("tensor \"" + t.name + "\" is on " +
                                          replication::device_name(t.device) + ", not on the host"));
  }
  return py::bytes(reinterpret_cast<const char*>(t.data), t.bytes);
}

struct Restoration {
  std::vector<RestoredTensor> tensors;
  std::vector<RestoredFile> files;
  replication::DeviceRestoreReport report;
};

std::shared_ptr<Restoration> restore(const std::string& location, const std::string& device,
                                     const std::string& ca, const std::string& cert, const std::string& key,
                                     std::size_t streams, const std::string& engine,
                                     std::size_t window_chunks) {
  replication::DeviceRestoreOptions options;
  options.device = value_or_raise(replication::parse_device(device));
  options.engine = value_or_raise(parse_engine_choice(engine));
  options.window_chunks = window_chunks;
  replication::SourceOptions source_options;
  source_options.tls.ca_file = ca;
  source_options.tls.cert_file = cert;
  source_options.tls.key_file = key;
  source_options.tls.role = replication::TlsRole::kClient;
  if (streams == 0 || streams > replication::kMaxRestoreStreams) {
    raise_status(Status::invalid_argument("streams must be 1.." +
                                          std::to_string(replication::kMaxRestoreStreams) + ", not " +
                                          std::to_string(streams)));
  }
  source_options.streams = streams;

  Result<replication::DeviceRestoreResult> result = Status::internal("not run");
  {
    py::gil_scoped_release release;
    auto source = replication::open_frame_source(location, source_options);
    if (!source.is_ok()) {
      result = source.status();
    } else {
      result = replication::restore_to_device(**source, options);
    }
  }
  auto r = value_or_raise(std::move(result));
  auto out = std::make_shared<Restoration>();
  out->tensors = std::move(r.tensors);
  out->files = std::move(r.files);
  out->report = std::move(r.report);
  return out;
}

py::dict report_dict(const replication::DeviceRestoreReport& r) {
  py::dict d;
  d["files"] = r.files;
  d["tensors"] = r.tensors;
  d["chunks"] = r.chunks;
  d["logical_bytes"] = r.logical_bytes;
  d["frame_bytes"] = r.frame_bytes;
  d["engine"] = r.engine;
  d["seconds"] = r.seconds;
  return d;
}

}  // namespace
}  // namespace ferry::python

PYBIND11_MODULE(_ext, m) {
  using namespace ferry;
  using namespace ferry::python;
  m.doc() = "ferry's native restore path (see the ferry package for the API)";
  // ferry.__version__: the same build information as `ferry --version`.
  m.attr("__version__") = std::string(build_info().version);
  m.attr("git_commit") = std::string(build_info().git_commit);

  g_ferry_error = PyErr_NewExceptionWithDoc("ferry.FerryError",
                                            "A ferry operation failed; the message says what and where.",
                                            PyExc_RuntimeError, nullptr);
  g_corruption_error = PyErr_NewExceptionWithDoc(
      "ferry.CorruptionError",
      "Restored data failed verification; the message names the chunk, file and offset.", g_ferry_error,
      nullptr);
  if (g_ferry_error == nullptr || g_corruption_error == nullptr) throw py::error_already_set();
  m.attr("FerryError") = py::handle(g_ferry_error);
  m.attr("CorruptionError") = py::handle(g_corruption_error);

  py::class_<AllocationProbe>(m, "AllocationProbe")
      .def_property_readonly("alive", &AllocationProbe::alive)
      .def_property_readonly("use_count", &AllocationProbe::use_count);

  py::class_<replication::RestoredTensor>(m, "RestoredTensor")
      .def_readonly("name", &RestoredTensor::name)
      .def_readonly("file", &RestoredTensor::file)
      .def_readonly("dtype", &RestoredTensor::dtype)
      .def_property_readonly("shape", [](const RestoredTensor& t) { return py::tuple(py::cast(t.shape)); })
      .def_readonly("nbytes", &RestoredTensor::bytes)
      .def_property_readonly("device",
                             [](const RestoredTensor& t) { return replication::device_name(t.device); })
      .def_property_readonly("data_ptr",
                             [](const RestoredTensor& t) { return reinterpret_cast<std::uintptr_t>(t.data); })
      // The torch dtype to view the DLPack tensor as ("" when it is already right).
      .def_property_readonly(
          "view_dtype",
          [](const RestoredTensor& t) { return value_or_raise(dlpack_type(t.dtype, t.name)).view; })
      .def("to_dlpack", &to_dlpack, "A new DLPack capsule over the tensor's memory (no copy).")
      .def("debug_bytes", &debug_bytes)
      .def("allocation_probe", [](const RestoredTensor& t) { return AllocationProbe{t.owner}; });

  py::class_<replication::RestoredFile>(m, "RestoredFile", py::buffer_protocol())
      .def_readonly("path", &RestoredFile::path)
      .def_readonly("size", &RestoredFile::size)
      .def_buffer([](RestoredFile& f) {
        void* data = f.data != nullptr ? static_cast<void*>(f.data) : static_cast<void*>(empty_file_byte);
        return py::buffer_info(data, 1, py::format_descriptor<std::uint8_t>::format(), 1,
                               {static_cast<py::ssize_t>(f.size)}, {static_cast<py::ssize_t>(1)},
                               /*readonly=*/false);
      })
      .def("allocation_probe", [](const RestoredFile& f) { return AllocationProbe{f.owner}; });

  py::class_<Restoration, std::shared_ptr<Restoration>>(m, "Restoration")
      .def_readonly("tensors", &Restoration::tensors)
      .def_readonly("files", &Restoration::files)
      .def_property_readonly("report", [](const Restoration& r) { return report_dict(r.report); });

  m.def("restore", &restore, py::arg("location"), py::arg("device"), py::arg("ca") = "", py::arg("cert") = "",
        py::arg("key") = "", py::arg("streams") = replication::kDefaultRestoreStreams,
        py::arg("engine") = "auto", py::arg("window_chunks") = 0,
        "Restores every file of a snapshot into memory; see ferry.load.");
  m.def("normalize_device", [](const std::string& s) {
    return replication::device_name(value_or_raise(replication::parse_device(s)));
  });
  m.def("gpu_unavailable_reason", &gpu_unavailable_reason, py::arg("device") = 0,
        "Why ferry cannot use a GPU here, or '' when it can.");
}
