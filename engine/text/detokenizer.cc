#include "engine/text/detokenizer.h"

#include <algorithm>

#include "engine/text/unicode.h"

namespace para {

using text::kReplacementChar;
using text::Utf8SequenceLength;
using text::Utf8ValidSecond;

std::string TakeCompleteUtf8(std::string* bytes) {
  std::string out;
  const std::string& s = *bytes;
  size_t i = 0;
  while (i < s.size()) {
    const auto lead = static_cast<unsigned char>(s[i]);
    const int len = Utf8SequenceLength(lead);
    if (len == 0) {
      out += kReplacementChar;
      ++i;
      continue;
    }
    int have = 1;
    bool invalid = false;
    while (have < len && i + have < s.size()) {
      const auto b = static_cast<unsigned char>(s[i + have]);
      if (have == 1 ? !Utf8ValidSecond(lead, b) : (b < 0x80 || b > 0xBF)) {
        invalid = true;
        break;
      }
      ++have;
    }
    if (invalid) {  // the lead byte can never be completed: replace it, resume at the next byte
      out += kReplacementChar;
      ++i;
      continue;
    }
    if (have < len) break;  // incomplete but still valid: wait for more bytes
    out.append(s, i, len);
    i += len;
  }
  bytes->erase(0, i);
  return out;
}

std::string IncrementalDetokenizer::Append(int32_t id) {
  if (tokenizer_ == nullptr) return "";
  const std::string bytes = tokenizer_->TokenBytes(id);
  pending_ += bytes.empty() && !skip_special_ ? tokenizer_->IdToPiece(id) : bytes;
  return TakeCompleteUtf8(&pending_);
}

std::string IncrementalDetokenizer::Flush() {
  std::string out = TakeCompleteUtf8(&pending_);
  // Like sentencepiece's decoder: one replacement character per byte that never completed.
  for (size_t i = 0; i < pending_.size(); ++i) out += kReplacementChar;
  pending_.clear();
  return out;
}

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops, bool include_stop)
    : stops_(std::move(stops)), include_stop_(include_stop) {
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
}

std::string StopStringMatcher::Feed(std::string_view text, bool may_match) {
  if (matched_) return "";
  if (!may_match) {  // pass through; what came before min_tokens is never searched
    std::string out = std::move(held_);
    held_.clear();
    out.append(text);
    return out;
  }
  held_.append(text);
  size_t best = std::string::npos;
  for (const auto& stop : stops_) {
    size_t pos = held_.find(stop);
    if (pos < best) {
      best = pos;
      matched_stop_ = stop;
    }
  }
  if (best != std::string::npos) {
    matched_ = true;
    std::string out = held_.substr(0, best + (include_stop_ ? matched_stop_.size() : 0));
    held_.clear();
    return out;
  }
  // Hold back the longest tail of held_ that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const auto& stop : stops_) {
    for (size_t k = std::min(stop.size() - 1, held_.size()); k > keep; --k) {
      if (held_.compare(held_.size() - k, k, stop, 0, k) == 0) {
        keep = k;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopStringMatcher::Flush() {
  std::string out = std::move(held_);
  held_.clear();
  return out;
}

}  // namespace para
