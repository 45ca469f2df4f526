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

// The element's text, or "" when it is absent.
Result<std::string> optional_text(std::string_view xml, std::string_view name) {
  ASSIGN_OR_RETURN(std::optional<Element> e, find_element(xml, name, 0));
  if (!e) return std::string();
  return decode_text(e->inner, name);
}

Result<std::uint64_t> parse_size(std::string_view text) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size()) {
    return Status::corruption("S3 reply: <Size> is not a number");
  }
  return v;
}

// ETags come quoted: "\"d41d8cd9...\"".
void strip_quotes(std::string& s) {
  if (s.size() >= 2 && s[0] == '"' && s[s.size() - 1] == '"') {
    s.pop_back();
    s.erase(0, 1);
  }
}

// Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

}  // namespace

std::optional<std::int64_t> parse_s3_time(std::string_view t) {
  // YYYY-MM-DDTHH:MM:SS, then optional .fraction, then Z.
  if (t.size() < 20 || t[4] != '-' || t[7] != '-' || t[10] != 'T' || t[13] != ':' || t[16] != ':' ||
      t.back() != 'Z') {
    return std::nullopt;
  }
  auto num = [&](std::size_t at, std::size_t len) -> std::optional<unsigned> {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(t.data() + at, t.data() + at + len, v);
    if (ec != std::errc() || p != t.data() + at + len) return std::nullopt;
    return v;
  };
  auto y = num(0, 4), mo = num(5, 2), d = num(8, 2), h = num(11, 2), mi = num(14, 2), s = num(17, 2);
  // Years past 2261 do not fit in int64 nanoseconds.
  if (!y || !mo || !d || !h || !mi || !s || *y < 1970 || *y > 2261 || *mo < 1 || *mo > 12 || *d < 1 ||
      *d > 31 || *h > 23 || *mi > 59 || *s > 60) {
    return std::nullopt;
  }
  std::int64_t frac_ns = 0;
  const std::string_view rest = t.substr(19, t.size() - 20);
  if (!rest.empty()) {
    if (rest[0] != '.' || rest.size() < 2 || rest.size() > 10) return std::nullopt;
    std::int64_t scale = 100'000'000;
    for (char c : rest.substr(1)) {
      if (c < '0' || c > '9') return std::nullopt;
      frac_ns += (c - '0') * scale;
      scale /= 10;
    }
  }
  const std::int64_t days = days_from_civil(*y, *mo, *d);
  return ((days * 24 + *h) * 60 + *mi) * 60'000'000'000LL + static_cast<std::int64_t>(*s) * 1'000'000'000LL +
         frac_ns;
}

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
    ASSIGN_OR_RETURN(o.etag, optional_text(c->inner, "ETag"));
    strip_quotes(o.etag);
    ASSIGN_OR_RETURN(std::string modified, optional_text(c->inner, "LastModified"));
    o.last_modified_ns = parse_s3_time(modified).value_or(0);
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
