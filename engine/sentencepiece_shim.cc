// Loads libpara_sentencepiece.so (our sentencepiece wrapper) privately. RTLD_LOCAL keeps its
// symbols, and those of Debian's libsentencepiece with its bundled protobuf-lite, out of the
// process's global scope, so the system libprotobuf that gRPC uses never sees them. When the
// system libprotobuf is already loaded (para-server), RTLD_DEEPBIND is added so that
// libsentencepiece also resolves its own protobuf symbols first rather than the system ones.
// (DEEPBIND is not used otherwise: it binds libstdc++ globals such as std::cout to libstdc++'s own
// copies rather than an executable's copy-relocated ones, which breaks the trainer's logging in
// processes that have such copies; para-server has none and never trains.)
// The library is looked for in $PARA_SENTENCEPIECE_LIB, next to the executable's lib/ folder,
// and where the build put it. Loading happens once; thread-safe.
#include <dlfcn.h>
#include <link.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "engine/tokenizer.h"

#ifndef PARA_SENTENCEPIECE_SHIM
#define PARA_SENTENCEPIECE_SHIM "libpara_sentencepiece.so"
#endif

namespace para {
namespace {

using LoadFn = Tokenizer* (*)(const std::string*, std::string*);
using TrainFn = bool (*)(const std::string*, const std::string*, int, std::string*);

struct Shim {
  LoadFn load = nullptr;
  TrainFn train = nullptr;
  std::string error;
};

std::string ExecutableDir() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  std::string path(buf, static_cast<size_t>(n));
  return path.substr(0, path.rfind('/'));
}

int FindProtobuf(struct dl_phdr_info* info, size_t, void* found) {
  if (info->dlpi_name != nullptr && std::strstr(info->dlpi_name, "libprotobuf.so") != nullptr) {
    *static_cast<bool*>(found) = true;
    return 1;
  }
  return 0;
}

[[maybe_unused]] bool SystemProtobufLoaded() {
  bool found = false;
  ::dl_iterate_phdr(&FindProtobuf, &found);
  return found;
}

const Shim& GetShim() {
  static Shim shim;
  static std::once_flag once;
  std::call_once(once, [] {
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("PARA_SENTENCEPIECE_LIB")) candidates.push_back(env);
    const std::string exe = ExecutableDir();
    if (!exe.empty()) {
      candidates.push_back(exe + "/../lib/libpara_sentencepiece.so");
      candidates.push_back(exe + "/libpara_sentencepiece.so");
    }
    candidates.push_back(PARA_SENTENCEPIECE_SHIM);
    std::string errors;
#ifdef PARA_SANITIZED
    // The sanitizer runtimes refuse RTLD_DEEPBIND; their builds go without it (and the tests run
    // there show whether the protobuf symbols still resolve apart).
    const int flags = RTLD_NOW | RTLD_LOCAL;
#else
    const int flags = RTLD_NOW | RTLD_LOCAL | (SystemProtobufLoaded() ? RTLD_DEEPBIND : 0);
#endif
    for (const std::string& path : candidates) {
      void* h = ::dlopen(path.c_str(), flags);
      if (h == nullptr) {
        errors += std::string("\n  ") + ::dlerror();
        continue;
      }
      shim.load = reinterpret_cast<LoadFn>(::dlsym(h, "para_spm_load"));
      shim.train = reinterpret_cast<TrainFn>(::dlsym(h, "para_spm_train"));
      if (shim.load != nullptr && shim.train != nullptr) return;
      errors += "\n  " + path + " lacks para_spm_load/para_spm_train";
    }
    shim.error = "cannot load the sentencepiece wrapper libpara_sentencepiece.so:" + errors;
  });
  return shim;
}

}  // namespace

std::unique_ptr<Tokenizer> LoadSentencePieceTokenizer(const std::string& path, std::string* error) {
  const Shim& shim = GetShim();
  if (shim.load == nullptr) {
    *error = shim.error;
    return nullptr;
  }
  return std::unique_ptr<Tokenizer>(shim.load(&path, error));
}

bool TrainSentencePieceBpe(const std::string& corpus_path, const std::string& model_prefix,
                           int vocab_size, std::string* error) {
  const Shim& shim = GetShim();
  if (shim.train == nullptr) {
    *error = shim.error;
    return false;
  }
  return shim.train(&corpus_path, &model_prefix, vocab_size, error);
}

}  // namespace para
