// safetensors.cc: the safetensors header reader. nlohmann::json parses the
// JSON twice, both passes linear and without exceptions: a streaming check
// (syntax, UTF-8, duplicate keys, depth), then the document itself, read
// only after every value's type has been checked.
#include "codec/safetensors.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "base/aligned_bytes.h"
#include "base/direct_file.h"
#include "codec/limits.h"

namespace ferry {
namespace {

using Json = nlohmann::json;

// The deepest legal value is a shape array inside a tensor entry inside the
// top-level object: three open containers. Anything deeper is not a
// safetensors header and is refused before it can cost memory.
constexpr int kMaxJsonDepth = 3;
constexpr std::string_view kMetadataKey = "__metadata__";
// Tensor names and values in messages are cut to this many bytes.
constexpr std::size_t kMaxNameInMessage = 200;

// Cuts `text` to at most kMaxNameInMessage bytes without splitting a UTF-8
// sequence, so a message stays valid UTF-8 (it may end up in JSON output).
std::string excerpt(std::string_view text) {
  if (text.size() <= kMaxNameInMessage) return std::string(text);
  std::size_t n = kMaxNameInMessage;
  while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
  return std::string(text.substr(0, n)) + "...";
}

std::string quote_name(std::string_view name) { return "\"" + excerpt(name) + "\""; }

// A JSON value as it appears in a message, shortened.
std::string excerpt_json(const Json& j) { return excerpt(std::string_view(j.dump())); }

std::string tensor_prefix(std::string_view name) { return "tensor " + quote_name(name) + ": "; }

std::string join_u64(const std::vector<std::uint64_t>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(v[i]);
  }
  return out + "]";
}

// Reads a JSON value that must be a non-negative integer within uint64.
bool as_u64(const Json& j, std::uint64_t& out) {
  if (j.is_number_unsigned()) {
    out = j.get<std::uint64_t>();
    return true;
  }
  if (j.is_number_integer() && j.get<std::int64_t>() >= 0) {
    out = static_cast<std::uint64_t>(j.get<std::int64_t>());
    return true;
  }
  return false;
}

// A first, streaming pass over the header: syntax (nlohmann's lexer also
// rejects ill-formed UTF-8), duplicate keys, which a DOM parse would silently
// collapse, and nesting depth. nlohmann's callback parser would do the same
// in one pass but rescans each parent object, quadratic in the tensor count.
class HeaderChecker final : public nlohmann::json_sax<Json> {
 public:
  const std::string& problem() const { return problem_; }

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override {
    keys_.emplace_back();
    return enter();
  }
  bool key(string_t& k) override {
    if (!keys_.back().insert(k).second) return fail("duplicate key " + quote_name(k));
    return true;
  }
  bool end_object() override {
    keys_.pop_back();
    --depth_;
    return true;
  }
  bool start_array(std::size_t) override { return enter(); }
  bool end_array() override {
    --depth_;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    problem_ = std::string("header is not valid JSON: ") + e.what();
    return false;
  }

 private:
  bool enter() {
    if (++depth_ > kMaxJsonDepth) return fail("JSON nested deeper than a safetensors header can be");
    return true;
  }
  bool fail(std::string why) {
    problem_ = "header: " + std::move(why);
    return false;
  }

  int depth_ = 0;
  std::vector<std::set<std::string>> keys_;  // one set per open object
  std::string problem_;
};

Result<Json> parse_json(std::string_view text) {
  HeaderChecker checker;
  if (!Json::sax_parse(text.begin(), text.end(), &checker) || !checker.problem().empty()) {
    return Status::corruption(checker.problem().empty() ? "header is not valid JSON" : checker.problem());
  }
  Json doc = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Status::corruption("header is not valid JSON");
  if (!doc.is_object()) return Status::corruption("header is not a JSON object");
  return doc;
}

Status parse_metadata(const Json& j, std::map<std::string, std::string>& out) {
  if (!j.is_object()) return Status::corruption("__metadata__ is not an object of strings");
  for (const auto& [k, v] : j.items()) {
    if (!v.is_string()) {
      return Status::corruption("__metadata__ value for key " + quote_name(k) + " is not a string");
    }
    out.emplace(k, v.get<std::string>());
  }
  return Status::ok();
}

Status parse_shape(const std::string& name, const Json& j, std::size_t element_bytes, TensorInfo& t,
                   std::uint64_t& product_bytes) {
  if (!j.is_array()) return Status::corruption(tensor_prefix(name) + "shape is not an array");
  if (j.size() > kMaxTensorRank) {
    return Status::corruption(tensor_prefix(name) + "shape has rank " + std::to_string(j.size()) +
                              ", above the limit of " + std::to_string(kMaxTensorRank));
  }
  std::uint64_t product = element_bytes;
  bool overflow = false;
  for (const Json& d : j) {
    std::uint64_t dim = 0;
    if (!as_u64(d, dim)) {
      return Status::corruption(tensor_prefix(name) + "shape holds " + excerpt_json(d) +
                                ", not a non-negative integer");
    }
    t.shape.push_back(dim);
    if (!overflow && dim != 0 && product > UINT64_MAX / dim) overflow = true;
    if (!overflow) product *= dim;
  }
  // A zero dimension makes the tensor empty whatever the others are.
  if (std::find(t.shape.begin(), t.shape.end(), 0) != t.shape.end()) {
    product = 0;
    overflow = false;
  }
  if (overflow) {
    return Status::corruption(tensor_prefix(name) + "shape " + join_u64(t.shape) + " of " + t.dtype_name +
                              " overflows 64-bit byte counts");
  }
  product_bytes = product;
  return Status::ok();
}

Result<TensorInfo> parse_tensor(const std::string& name, const Json& j, std::uint64_t data_offset,
                                std::uint64_t data_bytes) {
  if (!j.is_object()) return Status::corruption(tensor_prefix(name) + "entry is not an object");
  for (const auto& [k, v] : j.items()) {
    if (k != "dtype" && k != "shape" && k != "data_offsets") {
      return Status::corruption(tensor_prefix(name) + "unexpected key " + quote_name(k));
    }
  }
  for (const char* k : {"dtype", "shape", "data_offsets"}) {
    if (!j.contains(k)) return Status::corruption(tensor_prefix(name) + "missing \"" + k + "\"");
  }
  TensorInfo t;
  t.name = name;
  const Json& dt = j["dtype"];
  if (!dt.is_string()) return Status::corruption(tensor_prefix(name) + "dtype is not a string");
  t.dtype_name = dt.get<std::string>();
  auto props = safetensors_dtype(t.dtype_name);
  if (!props) {
    return Status::unsupported(tensor_prefix(name) + "unsupported dtype " + quote_name(t.dtype_name) +
                               " (ferry reads BOOL, U8, I8, F8_E4M3, F8_E5M2, I16, U16, F16, "
                               "BF16, I32, U32, F32, F64, I64, U64)");
  }
  t.element_bytes = props->element_bytes;
  t.dtype = props->dtype;

  std::uint64_t need = 0;
  RETURN_IF_ERROR(parse_shape(name, j["shape"], t.element_bytes, t, need));

  const Json& off = j["data_offsets"];
  std::uint64_t rel[2] = {0, 0};
  if (!off.is_array() || off.size() != 2 || !as_u64(off[0], rel[0]) || !as_u64(off[1], rel[1])) {
    return Status::corruption(tensor_prefix(name) + "data_offsets " + excerpt_json(off) +
                              " is not [begin, end] of non-negative integers");
  }
  std::string offsets = "data_offsets [" + std::to_string(rel[0]) + ", " + std::to_string(rel[1]) + "]";
  if (rel[0] > rel[1]) {
    return Status::corruption(tensor_prefix(name) + offsets + " end before they begin");
  }
  if (rel[1] - rel[0] != need) {
    return Status::corruption(tensor_prefix(name) + offsets + " give " + std::to_string(rel[1] - rel[0]) +
                              " bytes but shape " + join_u64(t.shape) + " of " + t.dtype_name + " needs " +
                              std::to_string(need));
  }
  if (rel[1] > data_bytes) {
    return Status::corruption(tensor_prefix(name) + offsets + " run past the data section (" +
                              std::to_string(data_bytes) + " bytes)");
  }
  t.begin = data_offset + rel[0];
  t.end = data_offset + rel[1];
  return t;
}

// The official format requires tensors to tile the data section: no gap, no
// overlap, nothing after the last. `tensors` is sorted by begin.
Status check_tiling(const std::vector<TensorInfo>& tensors, std::uint64_t data_offset,
                    std::uint64_t data_bytes) {
  std::uint64_t pos = data_offset;
  const TensorInfo* prev = nullptr;
  auto rel = [&](std::uint64_t abs) { return std::to_string(abs - data_offset); };
  for (const TensorInfo& t : tensors) {
    std::string offsets = "data_offsets [" + rel(t.begin) + ", " + rel(t.end) + "]";
    if (t.begin > pos) {
      return Status::corruption(
          tensor_prefix(t.name) + offsets + " leave a gap of " + std::to_string(t.begin - pos) + " bytes " +
          (prev ? "after tensor " + quote_name(prev->name) + " (ends at " + rel(pos) + ")"
                : std::string("at the start of the data section")));
    }
    if (t.begin < pos) {
      // Sorted by begin, so only a tensor starting before `pos` overlaps;
      // prev is set because the first tensor cannot start below data_offset.
      return Status::corruption(tensor_prefix(t.name) + offsets + " overlap tensor " +
                                quote_name(prev->name) + " [" + rel(prev->begin) + ", " + rel(prev->end) +
                                "]");
    }
    pos = t.end;
    prev = &t;
  }
  if (pos != data_offset + data_bytes) {
    return Status::corruption("data section is " + std::to_string(data_bytes) + " bytes but " +
                              (prev ? "the last tensor " + quote_name(prev->name) + " ends at " + rel(pos)
                                    : std::string("the header lists no tensors")));
  }
  return Status::ok();
}

}  // namespace

std::optional<SafetensorsDType> safetensors_dtype(std::string_view name) {
  struct Entry {
    std::string_view name;
    SafetensorsDType props;
  };
  static constexpr Entry kTable[] = {
      {"BOOL", {1, std::nullopt}},      {"U8", {1, std::nullopt}},        {"I8", {1, std::nullopt}},
      {"F8_E4M3", {1, DType::kF8E4M3}}, {"F8_E5M2", {1, DType::kF8E5M2}}, {"I16", {2, std::nullopt}},
      {"U16", {2, std::nullopt}},       {"F16", {2, DType::kF16}},        {"BF16", {2, DType::kBF16}},
      {"I32", {4, std::nullopt}},       {"U32", {4, std::nullopt}},       {"F32", {4, DType::kF32}},
      {"F64", {8, std::nullopt}},       {"I64", {8, std::nullopt}},       {"U64", {8, std::nullopt}},
  };
  for (const Entry& e : kTable) {
    if (e.name == name) return e.props;
  }
  return std::nullopt;
}

Result<std::uint64_t> safetensors_header_length(std::span<const std::byte> first8, std::uint64_t file_size) {
  if (file_size < kSafetensorsPrefixBytes) {
    return Status::corruption("file is " + std::to_string(file_size) +
                              " bytes, shorter than the 8-byte safetensors length prefix");
  }
  if (first8.size() < kSafetensorsPrefixBytes) {
    return Status::invalid_argument("safetensors_header_length needs the first 8 bytes, given " +
                                    std::to_string(first8.size()));
  }
  std::uint64_t n = 0;
  for (std::size_t i = 0; i < kSafetensorsPrefixBytes; ++i) {
    n |= static_cast<std::uint64_t>(first8[i]) << (8 * i);
  }
  if (n == 0) return Status::corruption("safetensors header length is 0");
  if (n > kMaxSafetensorsHeaderBytes) {
    return Status::corruption("safetensors header length " + std::to_string(n) + " exceeds the limit of " +
                              std::to_string(kMaxSafetensorsHeaderBytes) + " bytes");
  }
  if (n > file_size - kSafetensorsPrefixBytes) {
    return Status::corruption("safetensors header length " + std::to_string(n) +
                              " runs past the end of the file (" + std::to_string(file_size) + " bytes)");
  }
  return n;
}

Result<SafetensorsLayout> parse_safetensors(std::span<const std::byte> prefix, std::uint64_t file_size) {
  ASSIGN_OR_RETURN(std::uint64_t n, safetensors_header_length(prefix, file_size));
  if (prefix.size() - kSafetensorsPrefixBytes < n) {
    return Status::invalid_argument("parse_safetensors needs the first " +
                                    std::to_string(kSafetensorsPrefixBytes + n) +
                                    " bytes of the file, given " + std::to_string(prefix.size()));
  }
  SafetensorsLayout layout;
  layout.header_bytes = n;
  layout.data_offset = kSafetensorsPrefixBytes + n;
  layout.file_bytes = file_size;
  const std::uint64_t data_bytes = file_size - layout.data_offset;

  std::string_view text(reinterpret_cast<const char*>(prefix.data()) + kSafetensorsPrefixBytes, n);
  ASSIGN_OR_RETURN(Json doc, parse_json(text));
  for (const auto& [key, value] : doc.items()) {
    if (key == kMetadataKey) {
      RETURN_IF_ERROR(parse_metadata(value, layout.metadata));
      continue;
    }
    ASSIGN_OR_RETURN(TensorInfo t, parse_tensor(key, value, layout.data_offset, data_bytes));
    layout.tensors.push_back(std::move(t));
  }
  std::sort(layout.tensors.begin(), layout.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  RETURN_IF_ERROR(check_tiling(layout.tensors, layout.data_offset, data_bytes));
  return layout;
}

Result<SafetensorsLayout> read_safetensors_layout(const std::filesystem::path& path) {
  const std::string where = path.string();
  // Around the page cache, as the packer reads the chunks after it: a
  // buffered read here would also pull in the kernel's readahead (megabytes
  // of tensor data) for a header of kilobytes.
  ASSIGN_OR_RETURN(DirectReadFile file, DirectReadFile::open(path));
  struct stat st {};
  if (::fstat(file.fd(), &st) != 0) return Status::from_errno(errno, "stat " + where);
  const auto file_size = static_cast<std::uint64_t>(st.st_size);

  // The first block holds the length prefix (and all of a small header).
  AlignedBytes buf;
  const auto first = static_cast<std::size_t>(std::min<std::uint64_t>(file_size, kDirectAlignBytes));
  buf.take(first);
  RETURN_IF_ERROR(file.read(buf.padded(), first, 0).with_context("reading the length prefix"));
  auto n = safetensors_header_length(buf.view(), file_size);
  if (!n) return n.status().with_context(where);
  const std::size_t prefix_bytes = kSafetensorsPrefixBytes + *n;
  if (prefix_bytes > first) {
    buf.take(prefix_bytes);
    RETURN_IF_ERROR(file.read(buf.padded(), prefix_bytes, 0).with_context("reading the JSON header"));
  }
  auto layout = parse_safetensors(buf.view().first(prefix_bytes), file_size);
  if (!layout) return layout.status().with_context(where);
  return layout;
}

bool looks_like_safetensors(const std::filesystem::path& path) { return path.extension() == ".safetensors"; }

}  // namespace ferry
