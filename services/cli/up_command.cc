// SPDX-License-Identifier: Apache-2.0
// verdict up: starts a local cluster from its config as separate processes (target shards, draft
// worker, coordinator: the binaries beside `verdict`), waits until every member answers, prints one
// "ready" line, supervises them (a member that dies is restarted after a pause, so a killed shard
// comes back) and on SIGINT/SIGTERM stops them all (SIGTERM, then SIGKILL after a grace period).
#include <netdb.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "clients/verdict_client.h"
#include "common/status_macros.h"
#include "grpcpp/grpcpp.h"
#include "services/cli/cli_util.h"
#include "services/cli/commands.h"
#include "services/config/cluster_config.h"

namespace verdict::cli {
namespace {

struct UpFlags {
  std::string config;
  std::string bin_dir;
  double ready_timeout_s = 120;
  double restart_delay_s = 1;
  bool no_restart = false;
};

struct Member {
  std::string name;      // "shard 0", "draft", "coordinator"
  std::string address;   // gRPC address it serves
  std::vector<std::string> argv;
  pid_t pid = -1;
  absl::Time restart_at = absl::InfiniteFuture();
};

std::string SelfDir() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string path(buf, n);
  return path.substr(0, path.rfind('/'));
}

absl::StatusOr<pid_t> Spawn(const Member& m) {
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork failed for ", m.name));
  if (pid == 0) {
    // The child: die with `verdict up`, default signal handling, then exec.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, nullptr);
    std::vector<char*> args;
    for (const std::string& a : m.argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    std::fprintf(stderr, "verdict up: cannot run %s\n", args[0]);
    _exit(127);
  }
  return pid;
}

// Whether something accepts TCP connections at HOST:PORT ([v6]:PORT).
bool AcceptsTcp(const std::string& address, absl::Duration timeout) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return false;
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), address.c_str() + colon + 1, &hints, &found) != 0) return false;
  bool ok = false;
  for (addrinfo* a = found; a != nullptr && !ok; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    ok = connect(fd, a->ai_addr, a->ai_addrlen) == 0;
    close(fd);
  }
  freeaddrinfo(found);
  if (!ok) absl::SleepFor(timeout);
  return ok;
}

// Whether the member's gRPC server accepts connections. Under TLS the members' credentials differ
// (mutual TLS, client certificates), so a listening port is what counts.
bool Connected(const std::string& address, absl::Duration timeout, bool tls) {
  if (tls) return AcceptsTcp(address, timeout);
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  return channel->WaitForConnected(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
}

void StopAll(std::vector<Member>& members, absl::Duration grace) {
  // The coordinator first (it fails its streams cleanly), then the workers.
  for (auto it = members.rbegin(); it != members.rend(); ++it) {
    if (it->pid > 0) kill(it->pid, SIGTERM);
  }
  const absl::Time deadline = absl::Now() + grace;
  for (Member& m : members) {
    while (m.pid > 0) {
      int status = 0;
      const pid_t r = waitpid(m.pid, &status, WNOHANG);
      if (r == m.pid || r < 0) {
        m.pid = -1;
        break;
      }
      if (absl::Now() > deadline) {
        kill(m.pid, SIGKILL);
        waitpid(m.pid, &status, 0);
        m.pid = -1;
        break;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  }
}

absl::Status RunUp(const UpFlags& flags) {
  VERDICT_ASSIGN_OR_RETURN(v1::ClusterConfig config, services::LoadClusterConfig(flags.config));
  const std::string bin = flags.bin_dir.empty() ? SelfDir() : flags.bin_dir;
  // Loopback clusters keep UCX off the real network interfaces.
  setenv("UCX_NET_DEVICES", "lo", /*overwrite=*/0);
  const bool tls = !config.security().member_tls().ca_file().empty() ||
                   !config.security().client_tls().cert_file().empty();
  std::vector<Member> members;
  for (int i = config.shards_size() - 1; i >= 0; --i) {
    members.push_back({absl::StrCat("shard ", i), config.shards(i).listen(),
                       {bin + "/verdict-shard", "--config", flags.config, "--shard", absl::StrCat(i)}});
  }
  if (config.has_draft()) {
    members.push_back({"draft", config.draft().listen(), {bin + "/verdict-draft", "--config", flags.config}});
  }
  members.push_back({"coordinator", config.coordinator().listen(),
                     {bin + "/verdict-coordinator", "--config", flags.config}});

  // Our own signals are taken synchronously; children get the defaults back before exec.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  for (Member& m : members) {
    if (access(m.argv[0].c_str(), X_OK) != 0) {
      return absl::NotFoundError(absl::StrCat("cannot find ", m.argv[0], " (build it, or pass --bin-dir)"));
    }
  }
  // Workers first, the coordinator once they accept connections (so its first calls find them).
  const absl::Time deadline = absl::Now() + absl::Seconds(flags.ready_timeout_s);
  auto start_and_wait = [&](size_t from, size_t to) -> absl::Status {
    for (size_t i = from; i < to; ++i) {
      VERDICT_ASSIGN_OR_RETURN(members[i].pid, Spawn(members[i]));
    }
    for (size_t i = from; i < to; ++i) {
      Member& m = members[i];
      while (!Connected(m.address, absl::Milliseconds(200), tls)) {
        int status = 0;
        if (waitpid(m.pid, &status, WNOHANG) == m.pid) {
          m.pid = -1;
          return absl::UnavailableError(absl::StrCat(m.name, " exited during start-up (see its messages above)"));
        }
        if (absl::Now() > deadline) {
          return absl::DeadlineExceededError(absl::StrCat(m.name, " did not come up at ", m.address));
        }
      }
    }
    return absl::OkStatus();
  };
  absl::Status started = start_and_wait(0, members.size() - 1);
  if (started.ok()) started = start_and_wait(members.size() - 1, members.size());
  if (!started.ok()) {
    StopAll(members, absl::Seconds(5));
    return started;
  }
  // The coordinator answers its API (under client TLS a listening port has to do: `up` holds no
  // client credentials; under API keys "no key" is an answer).
  absl::StatusOr<v1::ListModelsResponse> models = v1::ListModelsResponse();
  if (config.security().client_tls().cert_file().empty()) {
    clients::VerdictClient client(config.coordinator().listen());
    models = client.ListModels();
    if (absl::IsUnauthenticated(models.status())) models = v1::ListModelsResponse();
  }
  if (!models.ok()) {
    StopAll(members, absl::Seconds(5));
    return models.status();
  }
  std::printf("verdict up: cluster \"%s\" ready: coordinator %s, %d target shards, %s, transport %s\n",
              config.name().c_str(), config.coordinator().listen().c_str(), config.shards_size(),
              config.has_draft() ? "draft worker" : "no draft",
              config.transport().kind() == v1::TransportConfig::KIND_GRPC ? "gRPC" : "UCX");
  std::fflush(stdout);

  // Supervise until told to stop.
  while (true) {
    timespec tick{0, 200 * 1000 * 1000};
    const int sig = sigtimedwait(&set, nullptr, &tick);
    if (sig == SIGINT || sig == SIGTERM) break;
    for (Member& m : members) {
      int status = 0;
      if (m.pid > 0 && waitpid(m.pid, &status, WNOHANG) == m.pid) {
        std::fprintf(stderr, "verdict up: %s (pid %d) exited (%s %d)%s\n", m.name.c_str(), m.pid,
                     WIFSIGNALED(status) ? "signal" : "status",
                     WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
                     flags.no_restart ? "" : "; restarting it");
        m.pid = -1;
        if (!flags.no_restart) m.restart_at = absl::Now() + absl::Seconds(flags.restart_delay_s);
      }
      if (m.pid < 0 && absl::Now() >= m.restart_at) {
        m.restart_at = absl::InfiniteFuture();
        absl::StatusOr<pid_t> pid = Spawn(m);
        if (pid.ok()) m.pid = *pid;
      }
    }
  }
  std::printf("verdict up: stopping\n");
  std::fflush(stdout);
  StopAll(members, absl::Seconds(10));
  return absl::OkStatus();
}

}  // namespace

void AddUpCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<UpFlags>();
  CLI::App* cmd = app.add_subcommand("up", "Start a local cluster (shards, draft worker, coordinator) from a config");
  cmd->add_option("--config", flags->config, "cluster config (textproto or JSON)")->required();
  cmd->add_option("--bin-dir", flags->bin_dir, "where verdict-shard/-draft/-coordinator are (default: beside verdict)");
  cmd->add_option("--ready-timeout", flags->ready_timeout_s, "seconds to wait for the members")->capture_default_str();
  cmd->add_option("--restart-delay", flags->restart_delay_s, "seconds before restarting a member that died")
      ->capture_default_str();
  cmd->add_flag("--no-restart", flags->no_restart, "do not restart members that die");
  cmd->callback([flags, exit_code] { *exit_code = ExitCode(RunUp(*flags)); });
}

}  // namespace verdict::cli
