#include "engine/cpu/kv_storage.h"

#include <sys/mman.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace para::cpu {

absl::StatusOr<std::unique_ptr<KvStorage>> KvStorage::Create(const KvLayout& layout,
                                                             int32_t num_blocks) {
  const size_t bytes = static_cast<size_t>(num_blocks) * layout.block_bytes();
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot map ", bytes, " bytes for the KV cache"));
  return std::unique_ptr<KvStorage>(new KvStorage(layout, static_cast<uint8_t*>(p), bytes));
}

KvStorage::~KvStorage() { ::munmap(base_, bytes_); }

void KvStorage::CopyBlock(int32_t src, int32_t dst) {
  std::memcpy(Block(dst), Block(src), layout_.block_bytes());
}

}  // namespace para::cpu
