#include "engine/backend.h"

namespace para {

int64_t NumLogitRows(std::span<const ForwardSeq> batch) {
  int64_t n = 0;
  for (const auto& s : batch) n += s.all_logits ? static_cast<int64_t>(s.tokens.size()) : 1;
  return n;
}

}  // namespace para
