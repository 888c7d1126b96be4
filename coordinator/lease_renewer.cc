// SPDX-License-Identifier: Apache-2.0
#include "coordinator/lease_renewer.h"

#include <utility>

#include "common/check.h"

namespace verdict::coordinator {

LeaseRenewer::LeaseRenewer(Coordinator* coordinator, absl::Duration lease, clients::DraftClient* draft,
                           clients::TargetClient* target)
    : coordinator_(coordinator), lease_(lease), draft_(draft), target_(target) {
  VERDICT_CHECK(lease_ > absl::ZeroDuration());
  VERDICT_CHECK(coordinator_ != nullptr && target_ != nullptr);
  thread_ = std::thread([this] { Run(); });
}

LeaseRenewer::~LeaseRenewer() {
  stop_.Notify();
  thread_.join();
}

void LeaseRenewer::Run() {
  do {
    Coordinator::LiveSessions live = coordinator_->Live();
    if (draft_ != nullptr) draft_->RenewLease({coordinator_->incarnation(), lease_, std::move(live.draft)});
    target_->RenewLease({coordinator_->incarnation(), lease_, std::move(live.target)});
    renewals_.fetch_add(1);
  } while (!stop_.WaitForNotificationWithTimeout(lease_ / 4));
}

}  // namespace verdict::coordinator
