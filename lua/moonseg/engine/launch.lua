-- launch.lua: the recipe's own launcher: `--nproc N` (CPU workers), `--gpus 0,1` (a worker per
-- GPU) and `--ips host1,host2` (the same command on every node) spawn the workers with
-- RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT set, write log_dir/workerlog.N (worker 0
-- also echoed to the console) and bring the whole job down when one worker fails, naming its
-- rank, exit status or signal and the last lines of its log. Processes are spawned and watched
-- through libc (posix_spawn, waitpid, poll) over the FFI.
local ffi = require "ffi"

local M = {}

for _, decl in ipairs {
  "typedef int ms_pid_t;",
  "int posix_spawnp(ms_pid_t *pid, const char *file, const void *fa, const void *attr, char *const argv[], char *const envp[]);",
  "int posix_spawn_file_actions_init(void *fa);",
  "int posix_spawn_file_actions_destroy(void *fa);",
  "int posix_spawn_file_actions_adddup2(void *fa, int fd, int newfd);",
  "int posix_spawn_file_actions_addopen(void *fa, int fd, const char *path, int oflag, unsigned int mode);",
  "ms_pid_t waitpid(ms_pid_t pid, int *status, int options);",
  "int kill(ms_pid_t pid, int sig);",
  "int pipe2(int fds[2], int flags);",
  "int close(int fd);",
  "long read(int fd, void *buf, size_t n);",
  "struct pollfd { int fd; short events; short revents; };",
  "int poll(struct pollfd *fds, unsigned long nfds, int timeout);",
  "char *strerror(int errnum);",
  "extern char **environ;",
  "int getpid(void);",
  "int getppid(void);",
  "int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5);",
} do pcall(ffi.cdef, decl) end
local C = ffi.C

local O_RDONLY, O_WRONLY, O_CREAT, O_TRUNC, O_CLOEXEC = 0, 1, 0x40, 0x200, 0x80000
local WNOHANG, SIGTERM, SIGKILL, POLLIN = 1, 15, 9, 1
local signames = { [1] = "SIGHUP", [2] = "SIGINT", [3] = "SIGQUIT", [4] = "SIGILL", [6] = "SIGABRT",
  [7] = "SIGBUS", [8] = "SIGFPE", [9] = "SIGKILL", [11] = "SIGSEGV", [13] = "SIGPIPE", [15] = "SIGTERM" }

local PR_SET_PDEATHSIG = 1

-- [in a worker] Ties this process's life to its launcher's: the kernel sends SIGKILL when the
-- launcher dies (even by SIGKILL), so no worker outlives it waiting on a collective. Set here,
-- in the child, since posix_spawn runs no code between fork and exec; the launcher's pid in
-- MOONSEG_LAUNCHER_PID closes the race of a launcher that died before prctl. Returns true when
-- armed (a launched worker on Linux).
function M.watch_launcher()
  local pid = tonumber(os.getenv("MOONSEG_LAUNCHER_PID") or "")
  if not pid or ffi.os ~= "Linux" then return false end
  if C.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0) ~= 0 then return false end
  if C.getppid() ~= pid then
    io.stderr:write(string.format("worker: the launcher (pid %d) is gone; exiting\n", pid))
    os.exit(1)
  end
  return true
end

-- The launch flags (added to a recipe's flag spec).
function M.spec()
  return {
    { "nproc", "int", 1, "CPU worker processes (per node); > 1 launches them", min = 1 },
    { "gpus", "string", nil, "launch one worker per listed GPU, e.g. 0,1,2,3" },
    { "ips", "string", nil, "run the job on these nodes (comma-separated; rank 0 on the first)" },
    { "node_rank", "int", nil, "this node's position in --ips (default: found from this host's addresses)", min = 0 },
    { "dist_timeout", "float", 180, "seconds a collective may wait for the other ranks", min = 1 },
    { "dist_liveness", "float", 5, "seconds without a heartbeat before a rank counts as unreachable (the job stops)",
      min = 1 },
    { "bucket_mb", "float", 25, "gradient all-reduce bucket size in MB", min = 0 },
    { "loss_mean", "string", "global", "data parallel loss: mean over the global batch's valid pixels, or each rank's (PyTorch)",
      choices = { "global", "rank" } },
  }
end

-- Flags the launcher consumes (dropped from the workers' command line).
local launch_flags = { nproc = true, gpus = true, ips = true, node_rank = true, log_dir = true }

-- True when this process is already one rank of a job (torchrun-style or Slurm environment).
function M.in_job()
  local w = tonumber(os.getenv("WORLD_SIZE") or "") or tonumber(os.getenv("SLURM_NTASKS") or "")
  return w ~= nil
end

-- True when cfg asks for a launch and this process is not a worker already.
function M.wanted(cfg)
  if M.in_job() then return false end
  return (cfg.nproc or 1) > 1 or cfg.gpus ~= nil or cfg.ips ~= nil
end

-- argv without the launch flags (both `--flag v` and `--flag=v`).
function M.strip(argv)
  local out, i = {}, 1
  while i <= #argv do
    local a = argv[i]
    local name, inline = a:match("^%-%-([%w_]+)(=?)")
    if name and launch_flags[name] then
      if inline == "" then i = i + 1 end
    else
      out[#out + 1] = a
    end
    i = i + 1
  end
  return out
end

local function split_list(s)
  local t = {}
  for x in s:gmatch("[^,%s]+") do t[#t + 1] = x end
  return t
end

-- The plan: who runs where. Returns {workers = {{rank, local_rank, env}}, master_addr, port,
-- world_size, node_rank}; errors are usage errors.
function M.plan(cfg)
  local dist = require "moonseg.dist"
  local devices
  if cfg.gpus then
    local ms = require "moonseg"
    if not ms.has_cuda() then
      error("--gpus " .. cfg.gpus .. ": this moonseg was built without the CUDA backend, so it cannot run GPU " ..
        "workers; use --nproc N for CPU workers", 0)
    end
    devices = split_list(cfg.gpus)
    if #devices == 0 then error("--gpus: no device ids in '" .. cfg.gpus .. "'", 0) end
    local count = ms.lib.C.ms_cuda_device_count()
    for _, d in ipairs(devices) do
      if not tonumber(d) or tonumber(d) >= count then
        error("--gpus " .. cfg.gpus .. ": CUDA device " .. d .. " is not visible (" .. count ..
          " device(s)); use --nproc N for CPU workers", 0)
      end
    end
    error("--gpus " .. cfg.gpus .. ": training on CUDA devices is not implemented yet (the CUDA backend " ..
      "has no convolution yet); use --nproc N for CPU workers", 0)
  end
  local nper = devices and #devices or (cfg.nproc or 1)
  local ips = cfg.ips and split_list(cfg.ips) or nil
  local node_rank, nnodes = 0, 1
  if ips then
    nnodes = #ips
    if nnodes == 0 then error("--ips: no addresses in '" .. cfg.ips .. "'", 0) end
    node_rank = cfg.node_rank or tonumber(os.getenv("MOONSEG_NODE_RANK") or "")
    if not node_rank then
      local mine = {}
      for i, ip in ipairs(ips) do
        local ok, srv = pcall(dist.Store.server, { host = ip, port = 0 })
        if ok then
          srv:stop()
          mine[#mine + 1] = i - 1
        end
      end
      if #mine == 0 then
        error("--ips " .. cfg.ips .. ": none of these is an address of this host; pass --node_rank", 0)
      elseif #mine > 1 then
        local names = {}
        for _, k in ipairs(mine) do names[#names + 1] = ips[k + 1] end
        error("--ips " .. cfg.ips .. ": several are addresses of this host (" .. table.concat(names, ", ") ..
          "); pass --node_rank", 0)
      end
      node_rank = mine[1]
    end
    if node_rank >= nnodes then
      error(string.format("--node_rank %d is out of range for %d nodes in --ips", node_rank, nnodes), 0)
    end
  end
  local master_addr = ips and ips[1] or "127.0.0.1"
  local port, hosted = tonumber(os.getenv("FLAGS_START_PORT") or ""), nil
  if not port then
    if nnodes > 1 then
      port = 6070 -- every node must agree without talking: PaddleSeg's default start port
    else
      -- one node: the launcher hosts the store itself on a port the kernel picks (bound,
      -- never released before use, so no other process can take it in between)
      hosted = dist.Store.server { host = "127.0.0.1", port = 0 }
      port = hosted:port()
    end
  end
  local world = nnodes * nper
  -- CPU threads per worker: the cores this launcher may use shared among its local workers
  -- (torchrun sets 1), unless --threads (passed on to the workers) or OMP_NUM_THREADS says
  local threads = tonumber(os.getenv("OMP_NUM_THREADS") or "")
  if not threads and not cfg.threads then
    threads = math.max(1, math.floor(require("moonseg").get_num_threads() / nper))
  end
  local p = { workers = {}, master_addr = master_addr, port = port, world_size = world, node_rank = node_rank,
    store_server = hosted, threads = cfg.threads or threads }
  for i = 0, nper - 1 do
    local rank = node_rank * nper + i
    local env = { RANK = rank, WORLD_SIZE = world, LOCAL_RANK = i, LOCAL_WORLD_SIZE = nper,
      MASTER_ADDR = master_addr, MASTER_PORT = port, MOONSEG_NODE_RANK = node_rank,
      MOONSEG_STORE_HOSTED = hosted and 1 or nil, MOONSEG_LAUNCHER_PID = C.getpid() }
    if threads then env.OMP_NUM_THREADS = threads end
    if devices then env.CUDA_VISIBLE_DEVICES = devices[i + 1] end
    p.workers[#p.workers + 1] = { rank = rank, local_rank = i, env = env }
  end
  return p
end

local function errno_msg(what)
  return what .. ": " .. ffi.string(C.strerror(ffi.errno()))
end

local function environment(over)
  local list = {}
  local i = 0
  while C.environ[i] ~= nil do
    local s = ffi.string(C.environ[i])
    local k = s:match("^([^=]*)=")
    if k and over[k] == nil then list[#list + 1] = s end
    i = i + 1
  end
  for k, v in pairs(over) do list[#list + 1] = k .. "=" .. tostring(v) end
  return list
end

local function cstrings(list)
  local arr = ffi.new("char*[?]", #list + 1)
  local keep = {}
  for i, s in ipairs(list) do
    keep[i] = ffi.new("char[?]", #s + 1, s)
    arr[i - 1] = keep[i]
  end
  arr[#list] = nil
  return arr, keep
end

-- Spawns cmd (a list) with env overrides; stdout and stderr go to log_path, or to a pipe
-- whose read end is returned (echo = true). Returns pid, read fd or -1.
local function spawn(cmd, env, log_path, echo)
  local fa = ffi.new("uint64_t[64]")
  assert(C.posix_spawn_file_actions_init(fa) == 0)
  local rfd = -1
  local fds = ffi.new("int[2]")
  C.posix_spawn_file_actions_addopen(fa, 0, "/dev/null", O_RDONLY, 0)
  if echo then
    if C.pipe2(fds, O_CLOEXEC) ~= 0 then error(errno_msg("launch: pipe"), 0) end
    rfd = fds[0]
    C.posix_spawn_file_actions_adddup2(fa, fds[1], 1)
    C.posix_spawn_file_actions_adddup2(fa, fds[1], 2)
  else
    C.posix_spawn_file_actions_addopen(fa, 1, log_path, bit.bor(O_WRONLY, O_CREAT, O_TRUNC), tonumber("644", 8))
    C.posix_spawn_file_actions_adddup2(fa, 1, 2)
  end
  local argv, k1 = cstrings(cmd)
  local envp, k2 = cstrings(environment(env))
  local pid = ffi.new("ms_pid_t[1]")
  local rc = C.posix_spawnp(pid, cmd[1], fa, nil, argv, envp)
  C.posix_spawn_file_actions_destroy(fa)
  if echo then C.close(fds[1]) end
  local _ = k1 and k2
  if rc ~= 0 then
    if rfd >= 0 then C.close(rfd) end
    error("launch: cannot start " .. cmd[1] .. ": " .. ffi.string(C.strerror(rc)), 0)
  end
  return pid[0], rfd
end

local function tail_lines(path, n)
  local f = io.open(path, "r")
  if not f then return { "(no log at " .. path .. ")" } end
  local lines = {}
  for line in f:lines() do
    lines[#lines + 1] = line
    if #lines > n then table.remove(lines, 1) end
  end
  f:close()
  return lines
end

-- The Lua error message above the last "stack traceback:" of a log (up to 5 lines, from the
-- "luajit: " line on), or nil: a deep traceback pushes it out of the last lines.
local function error_message(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local lines, t = {}, nil
  for line in f:lines() do
    lines[#lines + 1] = line
    if line:match("^%s*stack traceback:") then t = #lines end
  end
  f:close()
  if not t or t < 2 then return nil end
  local s = t - 1
  while s > 1 and s > t - 5 and not lines[s]:match("^luajit: ") do s = s - 1 end
  if not lines[s]:match("^luajit: ") then s = t - 1 end
  local msg = {}
  for i = s, t - 1 do msg[#msg + 1] = lines[i] end
  return msg, #lines - s + 1
end

local function describe(st)
  local sig = bit.band(st, 0x7f)
  if sig == 0 then return string.format("exited with status %d", bit.band(bit.rshift(st, 8), 0xff)), false end
  return string.format("was killed by signal %d (%s)", sig, signames[sig] or "?"), true
end

-- run(cfg, argv, {script = arg[0], interpreter = {arg[-k]..arg[-1]}, out = io.stdout,
-- err = io.stderr, stop_grace = 5}) -> exit code (0 when every worker succeeded).
function M.run(cfg, argv, o)
  o = o or {}
  local out, errf = o.out or io.stdout, o.err or io.stderr
  local plan = M.plan(cfg)
  local log_dir = cfg.log_dir or "log"
  os.execute("mkdir -p '" .. log_dir:gsub("'", "'\\''") .. "'")
  local interp = o.interpreter
  if not interp then
    interp = {}
    local lo = 0
    while arg and arg[lo - 1] do lo = lo - 1 end
    for i = lo, -1 do interp[#interp + 1] = arg[i] end
    if #interp == 0 then interp = { "luajit" } end
  end
  local cmd = {}
  for _, a in ipairs(interp) do cmd[#cmd + 1] = a end
  cmd[#cmd + 1] = o.script or (arg and arg[0])
  for _, a in ipairs(M.strip(argv)) do cmd[#cmd + 1] = a end

  local workers = {}
  out:write(string.format("launch: %d worker%s on node %d (world size %d, master %s:%d), %d thread%s each, " ..
    "logs in %s/workerlog.N\n", #plan.workers, #plan.workers == 1 and "" or "s", plan.node_rank, plan.world_size,
    plan.master_addr, plan.port, plan.threads, plan.threads == 1 and "" or "s", log_dir))
  out:flush()
  local echo_fd, echo_log = -1, nil
  local ok, err = pcall(function()
    for _, w in ipairs(plan.workers) do
      w.log = string.format("%s/workerlog.%d", log_dir, w.rank)
      local echo = w.local_rank == 0 and plan.node_rank == 0
      w.pid, w.fd = spawn(cmd, w.env, w.log, echo)
      if echo then
        echo_fd = w.fd
        echo_log = assert(io.open(w.log, "w"))
      end
      workers[#workers + 1] = w
    end
  end)
  local status = ffi.new("int[1]")
  local pfd = ffi.new("struct pollfd[1]")
  local buf = ffi.new("uint8_t[65536]")
  local function pump(wait_ms)
    if echo_fd >= 0 then
      pfd[0].fd, pfd[0].events, pfd[0].revents = echo_fd, POLLIN, 0
      if C.poll(pfd, 1, wait_ms) > 0 then
        local n = tonumber(C.read(echo_fd, buf, 65536))
        if n > 0 then
          local s = ffi.string(buf, n)
          out:write(s)
          out:flush()
          echo_log:write(s)
          echo_log:flush()
        elseif n == 0 then
          C.close(echo_fd)
          echo_fd = -1
          echo_log:close()
        end
      end
    elseif wait_ms > 0 then
      C.poll(nil, 0, wait_ms)
    end
  end
  local function reap(w, flags)
    if w.done then return true end
    local r = C.waitpid(w.pid, status, flags)
    if r == w.pid then
      w.done, w.status = true, status[0]
      -- a worker killed during communicator setup leaves its shared-memory ring named in /dev/shm
      require("moonseg.lib").C.ms_comm_remove_segments(w.pid)
      return true
    end
    return false
  end
  -- A rank that failed only because a peer went away (its collective or the store broke).
  local function is_follower(w)
    local tail = table.concat(tail_lines(w.log, 10), "\n")
    for _, mark in ipairs { "closed by peer", "connection closed", "timed out", "have not reached",
      "communicator is broken", "Connection reset", "is unreachable" } do
      if tail:find(mark, 1, true) then return true end
    end
    return false
  end
  -- Moves the first worker that failed first-hand (not knocked down by another) to the front.
  local function cause_first(failures)
    for i, w in ipairs(failures) do
      if not is_follower(w) then
        table.remove(failures, i)
        table.insert(failures, 1, w)
        return
      end
    end
  end
  local failed, failures = nil, {}
  if not ok then failed = { spawn_error = err } end
  while not failed do
    pump(200)
    local live = 0
    for _, w in ipairs(workers) do
      if not w.done and reap(w, WNOHANG) and w.status ~= 0 then failures[#failures + 1] = w end
      if not w.done then live = live + 1 end
    end
    if #failures > 1 then cause_first(failures) end -- several died together: name the cause
    failed = failures[1]
    if live == 0 and not failed then
      while echo_fd >= 0 do pump(1000) end
      break
    end
  end
  if not failed then
    out:write(string.format("launch: all %d workers finished\n", #workers))
    return 0
  end
  -- A follower died first (its peer's socket closed before the peer was reaped): give the
  -- others a moment to exit on their own, so the rank that failed first-hand is the one named.
  if not failed.spawn_error and is_follower(failed) then
    local deadline = os.time() + (o.follower_grace or 2)
    while os.time() < deadline do
      local live = 0
      for _, w in ipairs(workers) do
        if not w.done then
          if reap(w, WNOHANG) then
            if w.status ~= 0 then failures[#failures + 1] = w end
          else
            live = live + 1
          end
        end
      end
      if live == 0 then break end
      pump(100)
    end
    cause_first(failures)
    failed = failures[1]
  end
  -- stop the others: SIGTERM, then SIGKILL after the grace period
  local stopped = {}
  for _, w in ipairs(workers) do
    if not w.done then
      C.kill(w.pid, SIGTERM)
      w.stopped = true
      stopped[#stopped + 1] = w.rank
    end
  end
  local deadline = os.time() + (o.stop_grace or 5)
  while true do
    local live = 0
    for _, w in ipairs(workers) do if not reap(w, WNOHANG) then live = live + 1 end end
    if live == 0 or os.time() >= deadline then break end
    pump(100)
  end
  for _, w in ipairs(workers) do
    if not w.done then
      C.kill(w.pid, SIGKILL)
      reap(w, 0)
    end
  end
  while echo_fd >= 0 do pump(200) end
  out:flush()
  if failed.spawn_error then
    errf:write("\nlaunch: ", tostring(failed.spawn_error), "\n")
    return 1
  end
  -- every worker that failed on its own (not stopped by us), the first one first
  for _, w in ipairs(workers) do
    if not w.stopped and w.status ~= 0 and w ~= failed then failures[#failures + 1] = w end
  end
  local seen = {}
  for i, w in ipairs(failures) do
    if not seen[w] then
      seen[w] = true
      local what = describe(w.status)
      local lines = tail_lines(w.log, 10)
      if i == 1 then
        errf:write(string.format("\nlaunch: rank %d (pid %d) %s; stopped the other workers%s.\n", w.rank, w.pid,
          what, #stopped > 0 and (" (ranks " .. table.concat(stopped, ", ") .. ")") or ""))
      else
        errf:write(string.format("launch: rank %d (pid %d) %s as well.\n", w.rank, w.pid, what))
      end
      local msg, from_end = error_message(w.log)
      if msg and from_end > #lines then
        errf:write("launch: error: ", table.concat(msg, "\n  "), "\n")
      end
      errf:write(string.format("launch: last %d lines of %s:\n", #lines, w.log))
      for _, l in ipairs(lines) do errf:write("  | ", l, "\n") end
    end
  end
  errf:flush()
  local _, by_signal = describe(failed.status)
  if by_signal then return 128 + bit.band(failed.status, 0x7f) end
  return bit.band(bit.rshift(failed.status, 8), 0xff)
end

return M
