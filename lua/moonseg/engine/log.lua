-- log.lua: PaddleSeg-style log lines ("2024-01-01 12:00:00 [INFO]\t[TRAIN] ...") to stdout
-- and, when a file is attached, to it as well; ETA formatting; a progress bar.
local ffi = require "ffi"
local M = { file = nil, quiet = false }

pcall(ffi.cdef, "int isatty(int fd);")
local tty = pcall(function() return ffi.C.isatty(1) end) and ffi.C.isatty(1) == 1

function M.attach(path)
  M.file = assert(io.open(path, "a"))
end

function M.info(msg)
  local line = os.date("%Y-%m-%d %H:%M:%S") .. " [INFO]\t" .. msg
  if not M.quiet then
    io.stdout:write(line, "\n")
    io.stdout:flush()
  end
  if M.file then
    M.file:write(line, "\n")
    M.file:flush()
  end
end

function M.warn(msg)
  local line = os.date("%Y-%m-%d %H:%M:%S") .. " [WARNING]\t" .. msg
  io.stderr:write(line, "\n")
  if M.file then M.file:write(line, "\n") M.file:flush() end
end

function M.eta(seconds)
  seconds = math.max(0, math.floor(seconds + 0.5))
  return string.format("%02d:%02d:%02d", math.floor(seconds / 3600), math.floor(seconds / 60) % 60, seconds % 60)
end

-- A progress bar: redrawn in place on a terminal, a line every 10% otherwise.
function M.progress(total, label)
  local bar = { n = 0, total = total, t0 = nil, last_pct = -1 }
  function bar:update(n, extra)
    local ms = require "moonseg"
    self.t0 = self.t0 or ms.time()
    self.n = n
    local el = ms.time() - self.t0
    local eta = n > 0 and el / n * (total - n) or 0
    local width = 30
    local done = math.floor(width * n / math.max(total, 1))
    local text = string.format("%s %d/%d [%s%s] - ETA: %s%s", label or "", n, total,
      string.rep("=", done), string.rep(".", width - done), M.eta(eta), extra or "")
    if M.quiet then return end
    if tty then
      io.stdout:write("\r", text, n == total and "\n" or "")
      io.stdout:flush()
    else
      local pct = math.floor(10 * n / math.max(total, 1))
      if pct ~= self.last_pct then
        self.last_pct = pct
        io.stdout:write(text, "\n")
        io.stdout:flush()
      end
    end
  end
  return bar
end

return M
