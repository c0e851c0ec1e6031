// A short animation for the whole-grid POV-Ray tests: the ball moves and changes colour
// with the clock, so every frame differs.
#version 3.7;
global_settings { assumed_gamma 1.0 }

#include "materials.inc"

camera { location <0, 1.5, -5> look_at <0, 0.6, 0> }
light_source { <4, 8, -6> rgb 1 }
background { color SkyTop }

plane { y, 0 texture { Floor } }
sphere {
  <-1.5 + 3 * clock, 0.6 + sin(clock * pi), 0>, 0.6
  pigment { rgb <1 - clock, 0.3, clock> }
  finish { phong 0.7 }
}
