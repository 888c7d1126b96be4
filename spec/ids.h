// SPDX-License-Identifier: Apache-2.0
// The ids of speculation sessions. A generation is one SessionId, the same on every target shard;
// its draft side is a DraftSessionId of its own (a new one each time the coordinator reopens the
// draft after a failure), so a late reply for an abandoned draft session is recognisably stale and
// the two can never be passed for each other.
#ifndef VERDICT_SPEC_IDS_H_
#define VERDICT_SPEC_IDS_H_

#include "common/strong_id.h"

namespace verdict::spec {

using SessionId = StrongId<struct SessionIdTag>;
using DraftSessionId = StrongId<struct DraftSessionIdTag>;

}  // namespace verdict::spec

#endif  // VERDICT_SPEC_IDS_H_
