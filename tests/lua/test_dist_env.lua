-- test_dist_env.lua: the ways into a distributed job other than --nproc, end to end with the
-- train mode of ddp_worker.lua (2 ranks x batch 2 must equal 1 x batch 4): a Slurm-like
-- environment through recipes/tools/slurm_train.sh and a stand-in srun, with the compressed
-- nodelist node[1-2] resolved through a test-only hosts entry (a private mount of /etc/hosts);
-- torchrun's variables; recipes/tools/dist_train.sh with PORT, two jobs at once; and the
-- default threads per worker.
local H = require "harness"
local ms = require "moonseg"
local dist = ms.dist

local src = os.getenv("MOONSEG_SOURCE_DIR") or "."
local worker = src .. "/tests/lua/ddp_worker.lua"
local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p " .. tmp .. "/bin")
os.execute("ln -s " .. src .. "/tests/lua/fake_srun.sh " .. tmp .. "/bin/srun")

local function sh(cmd)
  local p = io.popen("timeout -s KILL 60 sh -c '" .. cmd:gsub("'", "'\\''") .. "' 2>&1; echo \"EXIT:$?\"")
  local s = p:read("*a")
  p:close()
  return s, tonumber(s:match("EXIT:(%d+)%s*$"))
end
local function must(cmd)
  local out, code = sh(cmd)
  if code ~= 0 then error(cmd .. "\nfailed (" .. tostring(code) .. "):\n" .. out, 2) end
  return out
end
local function result(prefix, rank)
  local f = loadfile(prefix .. "." .. rank)
  if not f then error("no result " .. prefix .. "." .. rank) end
  return f()
end
local function free_port()
  local s = dist.Store.server { host = "127.0.0.1", port = 0 }
  local p = s:port()
  s:stop()
  return p
end

local W = "luajit " .. worker .. " --batch 2 --steps 3"
must(W:gsub("--batch 2", "--batch 4") .. " --out " .. tmp .. "/one")
local one = result(tmp .. "/one", 0)

-- the 2-rank run under prefix equals the 1-rank run; both ranks hold the same parameters
local function same_as_one(prefix)
  local r0, r1 = result(prefix, 0), result(prefix, 1)
  H.eq(r0.world, 2)
  H.eq(r1.world, 2)
  for s = 1, 3 do H.near(r0.losses[s], one.losses[s], 1e-5 * math.abs(one.losses[s]), "loss step " .. s) end
  for i = 1, #one.params do
    H.near(r0.params[i], one.params[i], 2e-5, "parameter " .. i)
    H.eq(r1.params[i], r0.params[i], "ranks agree")
  end
  return r0, r1
end

H.case("Slurm: slurm_train.sh, srun tasks, nodelist node[1-2] through a hosts entry, PORT", function()
  local port = free_port()
  -- a private mount namespace whose /etc/hosts maps node1 and node2 (needs root); elsewhere a
  -- numeric compressed nodelist exercises the same parsing without name resolution
  local hosts = tmp .. "/hosts"
  local f = assert(io.open(hosts, "w"))
  f:write("127.0.0.1 localhost\n127.0.0.1 node1\n127.0.0.2 node2\n")
  f:close()
  local _, can = sh("unshare -m sh -c 'mount --bind " .. hosts .. " /etc/hosts && getent hosts node1'")
  local nodelist, wrap = "node[1-2]", function(c)
    return "unshare -m sh -c 'mount --bind " .. hosts .. " /etc/hosts && " .. c:gsub("'", "'\\''") .. "'"
  end
  if can ~= 0 then
    nodelist, wrap = "127.0.0.[1-2]", function(c) return c end
    io.stdout:write("  (no private mount of /etc/hosts here: nodelist 127.0.0.[1-2])\n")
  end
  must(wrap("PATH=" .. tmp .. "/bin:$PATH FAKE_SRUN_NODELIST='" .. nodelist .. "' PORT=" .. port ..
    " GPUS=2 GPUS_PER_NODE=2 " .. src .. "/recipes/tools/slurm_train.sh debug moonseg_test " .. worker ..
    " --batch 2 --steps 3 --out " .. tmp .. "/slurm"))
  local r0 = same_as_one(tmp .. "/slurm")
  H.eq(r0.master, (can == 0 and "node1:" or "127.0.0.1:") .. port, "master from the nodelist, port from PORT")
end)

H.case("torchrun's variables: each process one rank, no launcher", function()
  local port = free_port()
  local cmds = {}
  for r = 0, 1 do
    cmds[#cmds + 1] = string.format("RANK=%d LOCAL_RANK=%d WORLD_SIZE=2 LOCAL_WORLD_SIZE=2 GROUP_RANK=0 " ..
      "MASTER_ADDR=127.0.0.1 MASTER_PORT=%d TORCHELASTIC_RUN_ID=t1 %s --out %s/trun", r, r, port, W, tmp)
  end
  must(cmds[1] .. " & " .. cmds[2] .. " && wait $!")
  -- the first may finish after the shell: its result file tells
  local r0 = same_as_one(tmp .. "/trun")
  H.eq(r0.master, "127.0.0.1:" .. port)
end)

H.case("dist_train.sh CONFIG 2 with PORT: two jobs on one machine at once", function()
  local pa, pb = free_port(), free_port()
  local function job(name, port)
    return "PORT=" .. port .. " " .. src .. "/recipes/tools/dist_train.sh " .. worker .. " 2 --batch 2 --steps 3" ..
      " --log_dir " .. tmp .. "/" .. name .. "log --out " .. tmp .. "/" .. name .. " > " .. tmp .. "/" .. name ..
      ".out 2>&1"
  end
  must("(" .. job("ja", pa) .. ") & pa=$!; (" .. job("jb", pb) .. ") & pb=$!; wait $pa && wait $pb")
  for name, port in pairs { ja = pa, jb = pb } do
    local r0 = same_as_one(tmp .. "/" .. name)
    H.eq(r0.master, "127.0.0.1:" .. port, name .. " uses its PORT")
  end
end)

H.case("default threads per worker: the cores shared among the local workers; --threads and OMP_NUM_THREADS win", function()
  local cores = tonumber((must("nproc"):match("%d+")))
  local out = must("env -u OMP_NUM_THREADS " .. W .. " --nproc 2 --log_dir " .. tmp .. "/tlog --out " .. tmp .. "/thr")
  local want = math.max(1, math.floor(cores / 2))
  if not out:find(string.format("2 workers on node 0 .-%d threads? each", want)) then
    error("launcher line lacks the thread count " .. want .. ":\n" .. out)
  end
  H.eq(result(tmp .. "/thr", 0).threads0, want, "rank 0 starts with cores / 2 threads")
  H.eq(result(tmp .. "/thr", 1).threads0, want, "rank 1 too")
  must("OMP_NUM_THREADS=3 " .. W .. " --nproc 2 --log_dir " .. tmp .. "/tlog --out " .. tmp .. "/thr3")
  H.eq(result(tmp .. "/thr3", 1).threads0, 3, "OMP_NUM_THREADS is kept")
end)

os.execute("rm -rf " .. tmp)
H.done()
