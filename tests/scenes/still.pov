// A small still scene for the whole-grid POV-Ray tests: a few shapes, reflection, a local
// include (materials.inc, which includes palette.inc) and a standard one (colors.inc).
#version 3.7;
global_settings { assumed_gamma 1.0 }

#include "colors.inc"
#include "materials.inc"

camera { location <0, 2.2, -6> look_at <0, 0.7, 0> angle 45 }
light_source { <6, 9, -7> color White }
light_source { <-5, 4, -3> color Gray40 }
background { color SkyTop }

plane { y, 0 texture { Floor } }
sphere { <0, 1, 0>, 1 texture { Glossy } }
sphere { <1.7, 0.45, -0.9>, 0.45 texture { Matte } }
box { <-2.6, 0, -1.2>, <-1.4, 1.2, 0> rotate y*25 texture { Matte } }
cone { <1.6, 0, 1.4>, 0.6, <1.6, 1.8, 1.4>, 0 texture { Glossy } }
