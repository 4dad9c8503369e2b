#!/bin/sh
# The example artifact of Release entry-node-1.4.2: a stand-in for a real build.
echo "entry-node 1.4.2"
