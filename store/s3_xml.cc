// s3_xml.cc: see s3_xml.h.
#include "store/s3_xml.h"

#include <charconv>

namespace ferry {
namespace {

// Appends code point `cp` as UTF-8. False for what XML forbids (0,
// surrogates, beyond U+10FFFF).
bool append_utf8(std::string& out, std::uint32_t cp) {
  if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return false;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return true;
}

Result<std::string> decode_text(std::string_view text, std::string_view name) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '<') return Status::corruption("S3 reply: <" + std::string(name) + "> holds markup, not text");
    if (c != '&') {
      out += c;
      continue;
    }
    const std::size_t end = text.find(';', i);
    if (end == std::string_view::npos || end - i > 12) {
      return Status::corruption("S3 reply: unterminated entity in <" + std::string(name) + ">");
    }
    const std::string_view ent = text.substr(i + 1, end - i - 1);
    if (ent == "amp") {
      out += '&';
    } else if (ent == "lt") {
      out += '<';
    } else if (ent == "gt") {
      out += '>';
    } else if (ent == "quot") {
      out += '"';
    } else if (ent == "apos") {
      out += '\'';
    } else if (ent.size() >= 2 && ent[0] == '#') {
      const bool hex = ent[1] == 'x' || ent[1] == 'X';
      const std::string_view digits = ent.substr(hex ? 2 : 1);
      std::uint32_t cp = 0;
      auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), cp, hex ? 16 : 10);
      if (digits.empty() || ec != std::errc() || p != digits.data() + digits.size() ||
          !append_utf8(out, cp)) {
        return Status::corruption("S3 reply: bad character reference in <" + std::string(name) + ">");
      }
    } else {
      return Status::corruption("S3 reply: unknown entity &" + std::string(ent) + "; in <" +
                                std::string(name) + ">");
    }
    i = end;
  }
  return out;
}

// The position of the first start tag <name> (or <name attr...>, or
// <name/>) at or after `from`; npos when none.
std::size_t find_start_tag(std::string_view xml, std::string_view name, std::size_t from) {
  while (true) {
    const std::size_t at = xml.find('<', from);
    if (at == std::string_view::npos) return at;
    if (xml.substr(at + 1, name.size()) == name && at + 1 + name.size() < xml.size()) {
      const char next = xml[at + 1 + name.size()];
      if (next == '>' || next == '/' || next == ' ' || next == '\t' || next == '\r' || next == '\n')
        return at;
    }
    from = at + 1;
  }
}

// One element <name>...</name> found at or after `from`: its inner bytes and
// the position just past it.
struct Element {
  std::string_view inner;
  std::size_t end = 0;
};

Result<std::optional<Element>> find_element(std::string_view xml, std::string_view name, std::size_t from) {
  const std::size_t start = find_start_tag(xml, name, from);
  if (start == std::string_view::npos) return std::optional<Element>();
  const std::size_t open_end = xml.find('>', start);
  if (open_end == std::string_view::npos) {
    return Status::corruption("S3 reply: unterminated <" + std::string(name) + "> tag");
  }
  if (xml[open_end - 1] == '/') return std::optional<Element>(Element{{}, open_end + 1});  // <name/>
  const std::string close = "</" + std::string(name) + ">";
  const std::size_t close_at = xml.find(close, open_end + 1);
  if (close_at == std::string_view::npos) {
    return Status::corruption("S3 reply: <" + std::string(name) + "> is not closed");
  }
  return std::optional<Element>(
      Element{xml.substr(open_end + 1, close_at - open_end - 1), close_at + close.size()});
}

Result<std::string> required_text(std::string_view xml, std::string_view name) {
  ASSIGN_OR_RETURN(std::optional<std::string> text, xml_element_text(xml, name));
  if (!text) return Status::corruption("S3 reply: <" + std::string(name) + "> missing");
  return std::move(*text);
}

Result<std::uint64_t> parse_size(std::string_view text) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size()) {
    return Status::corruption("S3 reply: <Size> is not a number");
  }
  return v;
}

std::string strip_quotes(std::string_view s) {
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return std::string(s);
}

}  // namespace

Result<std::optional<std::string>> xml_element_text(std::string_view xml, std::string_view name) {
  ASSIGN_OR_RETURN(std::optional<Element> e, find_element(xml, name, 0));
  if (!e) return std::optional<std::string>();
  ASSIGN_OR_RETURN(std::string text, decode_text(e->inner, name));
  return std::optional<std::string>(std::move(text));
}

Result<S3ListPage> parse_list_objects_v2(std::string_view xml) {
  ASSIGN_OR_RETURN(std::optional<Element> root, find_element(xml, "ListBucketResult", 0));
  if (!root) return Status::corruption("S3 reply is not a ListBucketResult");
  S3ListPage page;
  // Leaf elements of the root come before, between or after the repeated
  // blocks; blank the blocks out of a copy to read them unambiguously.
  std::string top(root->inner);
  std::size_t pos = 0;
  while (true) {
    ASSIGN_OR_RETURN(std::optional<Element> c, find_element(root->inner, "Contents", pos));
    if (!c) break;
    S3Object o;
    ASSIGN_OR_RETURN(o.key, required_text(c->inner, "Key"));
    ASSIGN_OR_RETURN(std::string size, required_text(c->inner, "Size"));
    ASSIGN_OR_RETURN(o.size, parse_size(size));
    ASSIGN_OR_RETURN(std::optional<std::string> etag, xml_element_text(c->inner, "ETag"));
    if (etag) o.etag = strip_quotes(*etag);
    page.objects.push_back(std::move(o));
    const std::size_t begin = static_cast<std::size_t>(c->inner.data() - root->inner.data());
    top.replace(begin, c->inner.size(), c->inner.size(), ' ');
    pos = c->end;
  }
  pos = 0;
  while (true) {
    ASSIGN_OR_RETURN(std::optional<Element> c, find_element(root->inner, "CommonPrefixes", pos));
    if (!c) break;
    ASSIGN_OR_RETURN(std::string prefix, required_text(c->inner, "Prefix"));
    page.common_prefixes.push_back(std::move(prefix));
    const std::size_t begin = static_cast<std::size_t>(c->inner.data() - root->inner.data());
    top.replace(begin, c->inner.size(), c->inner.size(), ' ');
    pos = c->end;
  }
  ASSIGN_OR_RETURN(std::optional<std::string> truncated, xml_element_text(top, "IsTruncated"));
  page.truncated = truncated && *truncated == "true";
  if (page.truncated) {
    ASSIGN_OR_RETURN(page.next_continuation_token, required_text(top, "NextContinuationToken"));
    if (page.next_continuation_token.empty()) {
      return Status::corruption("S3 reply: a truncated page with an empty continuation token");
    }
  }
  return page;
}

S3ErrorBody parse_s3_error(std::string_view xml) {
  S3ErrorBody out;
  auto root = find_element(xml, "Error", 0);
  if (!root || !*root) return out;
  if (auto code = xml_element_text((*root)->inner, "Code"); code && *code) out.code = std::move(**code);
  if (auto msg = xml_element_text((*root)->inner, "Message"); msg && *msg) out.message = std::move(**msg);
  return out;
}

}  // namespace ferry
