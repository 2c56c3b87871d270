// The next gRPC operation of a server-streaming reactor that keeps one write in flight: what a
// call's state machine decides while holding its lock, and RunStreamAction, which carries it out
// after the lock is released (gRPC may call the reactor back inline). Used by para.v1's and the
// TGIS-compatible GenerateStream. Plain values; no ownership, no thread-safety of their own.
#pragma once

#include "grpcpp/grpcpp.h"

namespace para::server {

enum class StreamStep { kNone, kWrite, kWriteAndFinish, kFinish };

struct StreamAction {
  StreamStep kind = StreamStep::kNone;
  grpc::Status status;
};

// Starts `a` on `reactor`, writing `*out` for the write steps. `out` must stay untouched until
// the write completes. A caller whose action is kNone must not touch its reactor again (not even
// to call this): once its lock is released, another thread may finish the call, and gRPC then
// deletes the reactor (UBSan's vptr check caught exactly that in the sanitized server tests).
template <typename Reactor, typename Message>
void RunStreamAction(Reactor* reactor, const Message* out, const StreamAction& a) {
  switch (a.kind) {
    case StreamStep::kNone:
      return;
    case StreamStep::kWrite:
      reactor->StartWrite(out);
      return;
    case StreamStep::kWriteAndFinish:
      reactor->StartWriteAndFinish(out, grpc::WriteOptions(), a.status);
      return;
    case StreamStep::kFinish:
      reactor->Finish(a.status);
      return;
  }
}

}  // namespace para::server
