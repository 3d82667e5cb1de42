pipeline "p" {}
locals {
  a = format("%900000000s", "a")
  b = indent(100000000, "a\nb")
  c = setproduct(range(1000), range(1000), range(1000))
  d0 = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
  d1 = "${local.d0}${local.d0}${local.d0}${local.d0}${local.d0}${local.d0}${local.d0}${local.d0}${local.d0}${local.d0}"
  d2 = "${local.d1}${local.d1}${local.d1}${local.d1}${local.d1}${local.d1}${local.d1}${local.d1}${local.d1}${local.d1}"
  d3 = "${local.d2}${local.d2}${local.d2}${local.d2}${local.d2}${local.d2}${local.d2}${local.d2}${local.d2}${local.d2}"
  d4 = "${local.d3}${local.d3}${local.d3}${local.d3}${local.d3}${local.d3}${local.d3}${local.d3}${local.d3}${local.d3}"
  d5 = "${local.d4}${local.d4}${local.d4}${local.d4}${local.d4}${local.d4}${local.d4}${local.d4}${local.d4}${local.d4}"
  d6 = "${local.d5}${local.d5}${local.d5}${local.d5}${local.d5}${local.d5}${local.d5}${local.d5}${local.d5}${local.d5}"
  ok = format("%-10s|", "a")
}
stage "s" {
  step "run" "x" { command = ["true", local.ok] }
}
