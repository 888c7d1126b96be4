// SPDX-License-Identifier: Apache-2.0
// The served model of the client-API fuzz targets (openai_request, generation_request): the
// arithmetic target's tokenizer and chat template behind two GenerationService instances (no
// coordinator: only Prepare is called), and the invariants of a prepared request. Test-only.
#ifndef VERDICT_TESTS_FUZZ_SERVED_MODEL_H_
#define VERDICT_TESTS_FUZZ_SERVED_MODEL_H_

#include <memory>

#include "coordinator/coordinator.h"
#include "engine/tokenizer/tokenizer.h"
#include "services/coordinator/generation_service.h"

namespace verdict::fuzz {

struct ServedServices {
  std::unique_ptr<engine::Tokenizer> tokenizer;
  std::unique_ptr<services::GenerationService> exact_only;  // the defaults: exact only, no judge
  std::unique_ptr<services::GenerationService> everything;  // every policy allowed, a judge loaded
};
// Built once (context 64, default max tokens 16, stop token 0, a draft).
const ServedServices& Served();

// A prepared request has a non-empty prompt of ids inside the vocabulary that fits the context, a
// positive token budget, valid sampling and speculation values, and an allowed policy.
void CheckPrepared(const coordinator::GenerationRequest& p, const services::ServedModel& m);

}  // namespace verdict::fuzz

#endif  // VERDICT_TESTS_FUZZ_SERVED_MODEL_H_
