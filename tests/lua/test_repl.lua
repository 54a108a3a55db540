-- test_repl.lua: the REPL's expression printing, multi-line input, errors and field completion.
local H = require "harness"
local ms = require "moonseg"
local repl = require "moonseg.repl"

H.case("completion of module fields and tensor methods", function()
  local env = setmetatable({ ms = ms, x = ms.zeros(2) }, { __index = _G })
  local c = repl.completions(env, "ms.zer")
  H.same_list(c, { "ms.zeros", "ms.zeros_like" })
  local m = repl.completions(env, "x:siz")
  H.same_list(m, { "x:size" })
  local g = repl.completions(env, "pai")
  H.same_list(g, { "pairs" })
  H.same_list(repl.completions(env, "nothing.here"), {})
end)

H.case("values are shown without '='", function()
  H.eq(repl.show({ 1, 2 }), "{1, 2}")
  H.eq(repl.show(3), "3")
  H.eq(repl.show(ms.tensor({ 1 }, { device = "cpu" })), "tensor([1.], shape=[1], dtype=f32)")
  local f = repl.compile("1 + 1", {})
  H.eq(f(), 2)
end)

H.case("a scripted session prints results, continues lines and survives errors", function()
  local src = os.getenv("MOONSEG_SOURCE_DIR")
  local script = os.tmpname()
  local f = io.open(script, "w")
  f:write("x = ms.ones(2)\nx:size()\nfor i = 1, 2 do\nprint('line', i)\nend\nerror('boom')\n41 + 1\n")
  f:close()
  local p = io.popen(string.format("luajit -e \"package.path='%s'\" -e \"require'moonseg.repl'{plain=true, quiet=true}\" < %s 2>&1",
    package.path, script))
  local out = p:read("*a")
  p:close()
  os.remove(script)
  assert(out:find("{2}", 1, true), out)
  assert(out:find("line\t2", 1, true), out)
  assert(out:find("boom", 1, true), out)
  assert(out:find("42", 1, true), out)
end)

H.done()
