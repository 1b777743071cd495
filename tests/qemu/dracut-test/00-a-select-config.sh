#!/bin/sh
/ve/bin/sh /ve/select-config.sh
